package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/testwait"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// devServer starts an in-memory, single-server cluster in this process
// (no runner, no listener) and waits until it leads.
func devServer(t *testing.T, adjust func(*Config)) *Server {
	t.Helper()
	cfg := DevConfig()
	cfg.Runner = false
	if adjust != nil {
		adjust(cfg)
	}
	s, err := NewServer(cfg, "127.0.0.1:0", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	testwait.For(t, 10*time.Second, func() (bool, error) {
		return s.IsLeader() && s.leaderReady.Load(), errors.New("the dev server has not established leadership")
	})
	return s
}

// finishJobs submits n jobs and finishes them through the log as a runner
// would, one report batch each, so their done times rise.
func finishJobs(t *testing.T, s *Server, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("j-%s%04d", prefix, i)
		ids = append(ids, id)
		now := timestamppb.Now()
		if _, err := s.Apply(ctx, fsm.SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{{Id: id, Project: "gc", Name: "noop", CreatedAt: now}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-gc", Capacity: 1, Status: "adopted"}}); err != nil {
			t.Fatal(err)
		}
		res, err := s.Apply(ctx, fsm.AssignJobsType, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: id, RunnerId: "r-gc"}}})
		if err != nil || len(res.(*fsm.AssignResult).Assigned) != 1 {
			t.Fatalf("assigning %s: %v %v", id, res, err)
		}
		j, _ := s.State().JobByID(nil, id)
		rep, err := s.Apply(ctx, fsm.RunnerReportsType, &pb.RunnerReportsEntry{Time: timestamppb.Now(), Reports: []*pb.RunnerMessage{
			{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: id, Lease: j.Lease, Time: now}}},
			{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: id, Lease: j.Lease, Outcome: "succeeded", Time: now}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range rep.(*fsm.ReportsResult).Errors {
			if e != nil {
				t.Fatalf("reports of %s: %v", id, e)
			}
		}
	}
	return ids
}

// The leader's loop keeps the count bound, oldest first, and leaves
// pinned jobs alone; a forced pass with an age of 0 takes the rest.
func TestLeaderCollectsFinishedJobs(t *testing.T) {
	s := devServer(t, func(c *Config) { c.JobGCMaxFinished = 5 })
	ids := finishJobs(t, s, "a", 3)
	if _, err := s.Apply(context.Background(), fsm.PinJobType, &pb.PinJobEntry{JobId: ids[0], Pinned: true}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, finishJobs(t, s, "b", 6)...)
	// 8 unpinned finished jobs, 5 allowed: the 3 oldest unpinned go.
	testwait.For(t, 15*time.Second, func() (bool, error) {
		c, _, _ := s.State().FinishedStats()
		return c == 5, fmt.Errorf("%d finished jobs, want the count bound of 5", c)
	})
	for i, id := range ids {
		_, err := s.State().JobByID(nil, id)
		gone := i == 1 || i == 2 || i == 3
		if gone != (err != nil) {
			t.Errorf("job %d (%s): lookup error %v, want collected %v", i, id, err, gone)
		}
		if gone && !s.State().Collected(id) {
			t.Errorf("collected %s has no tombstone", id)
		}
	}
	res, err := s.collectJobs(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Collected != 5 || res.Finished != 0 || res.Pinned != 1 || res.Tombstones != 8 {
		t.Fatalf("forced pass: %+v, want 5 collected, 0 finished, 1 pinned, 8 tombstones", res)
	}
	if n := s.State().CountJobs(state.JobFilter{}); n != 1 {
		t.Fatalf("%d jobs left, want the pinned one", n)
	}
}

// A leader that loses leadership stops collecting; one with both bounds
// off never starts.
func TestCollectionStopsWithLeadership(t *testing.T) {
	s := devServer(t, func(c *Config) { c.JobGCMaxFinished, c.JobGCThreshold = 1, 0 })
	s.revokeLeadership()
	finishJobs(t, s, "c", 3)
	time.Sleep(2 * gcCheckInterval)
	if c, _, _ := s.State().FinishedStats(); c != 3 {
		t.Fatalf("%d finished jobs left with the leader loops stopped, want 3", c)
	}
	off := devServer(t, func(c *Config) { c.JobGCMaxFinished, c.JobGCThreshold = 0, 0 })
	finishJobs(t, off, "d", 3)
	time.Sleep(2 * gcCheckInterval)
	if c, _, _ := off.State().FinishedStats(); c != 3 {
		t.Fatalf("%d finished jobs left with retention off, want 3", c)
	}
}
