package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// UpsertProfiles creates or replaces runner profiles. At most one profile
// is the default: a profile set as default takes the flag from the others.
func (s *Store) UpsertProfiles(index uint64, profiles []*pb.RunnerProfile) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, p := range profiles {
			p = proto.Clone(p).(*pb.RunnerProfile)
			if raw, _ := txn.First(TableProfiles, "id", p.Name); raw != nil {
				p.CreateIndex = raw.(*pb.RunnerProfile).CreateIndex
			} else {
				p.CreateIndex = index
			}
			p.ModifyIndex = index
			if p.Default {
				for _, other := range profilesFrom(txn, nil) {
					if other.Name != p.Name && other.Default {
						o := proto.Clone(other).(*pb.RunnerProfile)
						o.Default, o.ModifyIndex = false, index
						if err := txn.Insert(TableProfiles, o); err != nil {
							return fmt.Errorf("state: update profile %s: %w", o.Name, err)
						}
					}
				}
			}
			if err := txn.Insert(TableProfiles, p); err != nil {
				return fmt.Errorf("state: insert profile %s: %w", p.Name, err)
			}
		}
		return nil
	}, TableProfiles)
}

// DeleteProfile removes a runner profile. Queued jobs keep the targeting
// they copied from it at submit time.
func (s *Store) DeleteProfile(index uint64, name string) error {
	return s.deleteNamed(index, TableProfiles, "runner profile", name)
}

// deleteNamed removes the row of table whose id is name; what names the
// kind of row in the not-found error.
func (s *Store) deleteNamed(index uint64, table, what, name string) error {
	return s.write(index, func(txn *memdb.Txn) error {
		n, err := txn.DeleteAll(table, "id", name)
		if err != nil {
			return fmt.Errorf("state: delete %s: %w", what, err)
		}
		if n == 0 {
			return fmt.Errorf("%s %q: %w", what, name, ErrNotFound)
		}
		return nil
	}, table)
}

// Profiles lists runner profiles by name.
func (s *Store) Profiles(ws memdb.WatchSet) []*pb.RunnerProfile {
	return profilesFrom(s.db.Txn(false), ws)
}

func profilesFrom(txn *memdb.Txn, ws memdb.WatchSet) []*pb.RunnerProfile {
	return all[*pb.RunnerProfile](txn, ws, TableProfiles, "id")
}

// ProfileByName returns one profile.
func (s *Store) ProfileByName(name string) (*pb.RunnerProfile, error) {
	raw, err := s.db.Txn(false).First(TableProfiles, "id", name)
	if err != nil {
		return nil, fmt.Errorf("state: profile lookup: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("runner profile %q: %w", name, ErrNotFound)
	}
	return raw.(*pb.RunnerProfile), nil
}

// DefaultProfile returns the default profile, or nil when none is set.
func (s *Store) DefaultProfile() *pb.RunnerProfile {
	for _, p := range s.Profiles(nil) {
		if p.Default {
			return p
		}
	}
	return nil
}

// DeleteProject removes a stored project. Its jobs stay.
func (s *Store) DeleteProject(index uint64, name string) error {
	return s.deleteNamed(index, TableProjects, "project", name)
}

// SetPendingReasons records why queued jobs wait. Jobs no longer pending are
// skipped: the reason was about a moment that has passed.
func (s *Store) SetPendingReasons(index uint64, reasons []*pb.PendingReason) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, r := range reasons {
			j, err := getJob(txn, r.JobId)
			if err != nil || j.Status != StatusPending || j.StatusReason == r.Reason {
				continue
			}
			j.StatusReason = r.Reason
			if err := s.putJob(txn, index, j); err != nil {
				return err
			}
		}
		return nil
	}, TableJobs)
}

// RetryJob runs a finished job again as its next attempt.
func (s *Store) RetryJob(index uint64, e *pb.RetryJobEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		j, err := getJob(txn, e.JobId)
		if err != nil {
			return err
		}
		if !Terminal(j.Status) {
			return fmt.Errorf("job %s is %s; only a finished job can be retried: %w", j.Id, j.Status, ErrConflict)
		}
		prev := j.Status
		requeue(j, nil, fmt.Sprintf("retried by a user after attempt %d %s", j.Attempt, prev))
		j.CancelRequested, j.ExitCode, j.Error = false, 0, ""
		j.UpdatedAt = e.Time
		if err := s.putJob(txn, index, j); err != nil {
			return err
		}
		return nil
	}, TableJobs)
}
