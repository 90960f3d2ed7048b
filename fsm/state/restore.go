package state

import (
	"bytes"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Restore fills a new, empty store from a snapshot, row by row, in one
// transaction; nothing is visible until Commit.
type Restore struct {
	s    *Store
	txn  *memdb.Txn
	hist *history
	// logs of finished jobs, joined to their rows at Commit.
	logs map[*finishedJob][][]byte
}

// Restore starts a restore into s, which must be empty.
func (s *Store) Restore() *Restore {
	return &Restore{s: s, txn: s.txn(), logs: map[*finishedJob][][]byte{}}
}

func (r *Restore) insert(table string, obj any) error {
	if err := r.txn.Insert(table, obj); err != nil {
		return fmt.Errorf("state: restore %s: %w", table, err)
	}
	return nil
}

// Job restores a job; raw, when not nil, is j's encoding as read, which a
// finished job keeps (a copy of) instead of encoding it again.
func (r *Restore) Job(j *pb.Job, raw []byte) error {
	if !rpc.JobTerminal(j.Status) {
		return r.insert(TableJobs, j)
	}
	// A job finished before done_at existed gets it from its own times
	// (see doneAt), in its row only: its encoding stays as it was.
	row := rowOf(j, bytes.Clone(raw))
	if raw == nil {
		var err error
		if row, err = newFinishedJob(j); err != nil {
			return err
		}
	}
	h, err := r.history()
	if err != nil {
		return err
	}
	h.put(row)
	return nil
}

func (r *Restore) history() (*history, error) {
	if r.hist == nil {
		var err error
		if r.hist, err = r.s.writableHistory(r.txn); err != nil {
			return nil, err
		}
	}
	return r.hist, nil
}

// Tombstones restores the tombstones of the jobs one entry deleted.
// Snapshots from before tombstones have none.
func (r *Restore) Tombstones(t *pb.Tombstones) error {
	h, err := r.history()
	if err != nil {
		return err
	}
	h.addTombstones(&tombBatch{Index: t.Index, At: unixNanos(t.Time), Keys: t.Keys})
	return nil
}

// LogChunk restores a chunk; raw is its encoding as read. A finished job's
// chunks join its history row (restored before them), others the log table.
func (r *Restore) LogChunk(c *pb.LogChunk, raw []byte) error {
	var row *finishedJob
	if r.hist != nil {
		row = r.hist.get(c.JobId)
	}
	if row == nil {
		return r.insert(TableJobLogs, c)
	}
	r.logs[row] = append(r.logs[row], bytes.Clone(raw))
	return nil
}
func (r *Restore) Project(p *pb.Project) error         { return r.insert(TableProjects, p) }
func (r *Restore) Runner(x *pb.Runner) error           { return r.insert(TableRunners, x) }
func (r *Restore) RunnerToken(t *pb.RunnerToken) error { return r.insert(TableTokens, t) }
func (r *Restore) Profile(p *pb.RunnerProfile) error   { return r.insert(TableProfiles, p) }

// Index records the index every table is restored at.
func (r *Restore) Index(index uint64) error {
	for _, t := range []string{TableJobs, TableJobLogs, TableProjects, TableRunners, TableTokens, TableProfiles,
		TableACLPolicies, TableACLTokens, TableACLUsers, TableACLMeta} {
		if err := setIndex(r.txn, t, index); err != nil {
			return err
		}
	}
	return nil
}

// Commit makes the restored state visible. Finished jobs get their logs
// now, each in one allocation; their rows are not visible before, so they
// may change in place.
func (r *Restore) Commit() {
	for row, chunks := range r.logs {
		row.setLogs(row.Logs, chunks)
	}
	r.txn.Commit()
}
func (r *Restore) Abort() { r.txn.Abort() }

// RunnerTombstone restores a forgotten runner's tombstone.
func (r *Restore) RunnerTombstone(t *pb.RunnerTombstone) error {
	return r.insert(TableRunnerTombstones, t)
}

// GossipKeyring restores the gossip keyring.
func (r *Restore) GossipKeyring(k *pb.GossipKeyring) error { return r.insert(TableGossipKeyring, k) }
