package agent

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// Garbage collection of finished jobs is leader work, like dispatch: the
// leader picks the jobs by its own clock and deletes them through the log,
// one entry per batch naming the ids, so every server deletes the same
// ones whatever its clock says.
const (
	// gcCheckInterval is how often the leader looks for work. A look that
	// finds none reads a count and the oldest job's time, so it can be
	// frequent, and the count bound holds within a second even when jobs
	// finish by the thousand.
	gcCheckInterval = time.Second
	// gcBatch bounds the ids in one entry (about 20 bytes each), so one
	// entry is a small write and a short apply on every server.
	gcBatch = 1024
	// gcBatchesPerPass bounds one pass (a backlog of 64k jobs, such as when
	// retention is first turned on or lowered); the next check goes on.
	// Other writes are not held up meanwhile: each batch is its own entry.
	gcBatchesPerPass = 64
)

// GCResult is what a pass did and left.
type GCResult struct {
	Collected int
	// Finished are the finished jobs left that may be collected later,
	// Pinned those that never will, Tombstones the ids of collected jobs
	// remembered.
	Finished, Pinned, Tombstones int
}

// collectLoop is the leader's garbage collector: every gcCheckInterval it
// runs a pass with the configured bounds, until ctx ends with leadership.
func (s *Server) collectLoop(ctx context.Context) {
	if s.cfg.JobGCThreshold <= 0 && s.cfg.JobGCMaxFinished <= 0 {
		s.logger.Warn("garbage collection of finished jobs is off (job_gc_threshold and job_gc_max_finished are 0): state grows with every job")
		return
	}
	t := time.NewTicker(gcCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.collectJobs(ctx, s.gcThreshold())
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.Warn("garbage collection of finished jobs failed; retrying at the next check", "error", err)
		case res.Collected > 0:
			s.logger.Debug("garbage-collected finished jobs", "jobs", res.Collected, "finished_left", res.Finished, "pinned", res.Pinned)
		}
	}
}

// gcThreshold is the age bound of a pass: job_gc_threshold, or -1 (no
// age bound) when it is 0.
func (s *Server) gcThreshold() time.Duration {
	if s.cfg.JobGCThreshold <= 0 {
		return -1
	}
	return s.cfg.JobGCThreshold
}

// collectJobs runs one garbage-collection pass: it deletes the finished
// jobs, not pinned, done more than olderThan ago (no age bound when
// olderThan is negative; 0 takes every one), and the oldest beyond
// job_gc_max_finished. Only the leader runs passes; the loop and
// `outpost job gc` take turns.
func (s *Server) collectJobs(ctx context.Context, olderThan time.Duration) (GCResult, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var res GCResult
	if !s.IsLeader() {
		return res, fmt.Errorf("%w: garbage collection runs on the leader, and this server no longer leads", rpcserver.ErrNoLeader)
	}
	for range gcBatchesPerPass {
		now := time.Now()
		var cutoff time.Time
		if olderThan >= 0 {
			cutoff = now.Add(-olderThan)
		}
		ids := s.State().Collectable(cutoff, s.cfg.JobGCMaxFinished, gcBatch)
		if len(ids) == 0 {
			break
		}
		// Apply waits until this server has applied the entry, so the next
		// batch is picked from a state without this one.
		entry := &pb.DeleteJobsEntry{JobIds: ids, Gc: true, Time: timestamppb.New(now)}
		if _, err := s.Apply(ctx, fsm.DeleteJobsType, entry); err != nil {
			return res, fmt.Errorf("deleting %d finished jobs: %w", len(ids), err)
		}
		res.Collected += len(ids)
	}
	res.Finished, res.Pinned, res.Tombstones = s.State().FinishedStats()
	return res, nil
}

// CollectJobs implements rpcserver.Backend: `outpost job gc`.
func (s *Server) CollectJobs(ctx context.Context, olderThan *time.Duration) (*pb.GarbageCollectResponse, error) {
	age := s.gcThreshold()
	if olderThan != nil {
		age = *olderThan
	}
	res, err := s.collectJobs(ctx, age)
	if err != nil {
		return nil, err
	}
	return &pb.GarbageCollectResponse{Collected: uint64(res.Collected), Finished: uint64(res.Finished),
		Pinned: uint64(res.Pinned), Tombstones: uint64(res.Tombstones)}, nil
}
