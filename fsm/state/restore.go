package state

import (
	"bytes"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Restore fills a new, empty store from a snapshot, row by row, in one
// transaction; nothing is visible until Commit.
type Restore struct {
	txn *memdb.Txn
}

// Restore starts a restore into s, which must be empty.
func (s *Store) Restore() *Restore { return &Restore{txn: s.txn()} }

func (r *Restore) insert(table string, obj any) error {
	if err := r.txn.Insert(table, obj); err != nil {
		return fmt.Errorf("state: restore %s: %w", table, err)
	}
	return nil
}

// Job restores a job; raw, when not nil, is j's encoding as read, which a
// finished job keeps (a copy of) instead of encoding it again.
func (r *Restore) Job(j *pb.Job, raw []byte) error {
	if !Terminal(j.Status) {
		return r.insert(TableJobs, j)
	}
	if raw == nil {
		row, err := newFinishedJob(j)
		if err != nil {
			return err
		}
		return r.insert(tableHistory, row)
	}
	return r.insert(tableHistory, &finishedJob{Id: j.Id, Project: j.Project, Status: j.Status, CreateIndex: j.CreateIndex, Raw: bytes.Clone(raw)})
}

// LogChunk restores a chunk; raw is its encoding as read. A finished job's
// chunks join its history row (restored before them), others the log table.
func (r *Restore) LogChunk(c *pb.LogChunk, raw []byte) error {
	row, err := r.txn.First(tableHistory, "id", c.JobId)
	if err != nil {
		return fmt.Errorf("state: restore log chunk: %w", err)
	}
	if row == nil {
		return r.insert(TableJobLogs, c)
	}
	// The row is not visible to anyone before Commit, and no index reads
	// its logs, so it may grow in place.
	row.(*finishedJob).addChunk(raw)
	return nil
}
func (r *Restore) Project(p *pb.Project) error         { return r.insert(TableProjects, p) }
func (r *Restore) Runner(x *pb.Runner) error           { return r.insert(TableRunners, x) }
func (r *Restore) RunnerToken(t *pb.RunnerToken) error { return r.insert(TableTokens, t) }
func (r *Restore) Profile(p *pb.RunnerProfile) error   { return r.insert(TableProfiles, p) }

// Index records the index every table is restored at.
func (r *Restore) Index(index uint64) error {
	for _, t := range []string{TableJobs, TableJobLogs, TableProjects, TableRunners, TableTokens, TableProfiles} {
		if err := setIndex(r.txn, t, index); err != nil {
			return err
		}
	}
	return nil
}

func (r *Restore) Commit() { r.txn.Commit() }
func (r *Restore) Abort()  { r.txn.Abort() }
