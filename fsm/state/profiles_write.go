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
