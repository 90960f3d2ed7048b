package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// leaderAndFollower starts a three-server cluster and returns its leader
// and one follower.
func leaderAndFollower(t *testing.T, adjust func(*Config)) (leader, follower *Agent, all []*Agent) {
	t.Helper()
	all = TestCluster(t, 3, adjust)
	leader = WaitForLeader(t, all...)
	for _, a := range all {
		if a != leader {
			return leader, a, all
		}
	}
	panic("unreachable")
}

// A write made on a follower is committed by the leader, and the follower
// has applied it by the time Apply returns; results the leader computes
// (assignments, per-report outcomes) come back whole.
func TestFollowerForwardsWrites(t *testing.T) {
	leader, follower, _ := leaderAndFollower(t, nil)
	f, l := follower.Server(), leader.Server()
	addRunner(t, f, "r-1")
	testwait.For(t, 10*time.Second, func() (bool, error) {
		_, err := l.State().RunnerByID(nil, "r-1")
		return err == nil, fmt.Errorf("the leader lacks a runner recorded through a follower: %w", err)
	})
	// Submits ride the follower's batcher to the leader.
	submitJob(t, f, "j-a")
	submitJob(t, f, "j-b")
	for _, id := range []string{"j-a", "j-b"} {
		if _, err := f.State().JobByID(nil, id); err != nil {
			t.Fatalf("job %s submitted through the follower is not in its state: %v", id, err)
		}
	}
	// An assignment and reports are not retried when they fail for want
	// of a leader (they may have been committed): a loaded machine that
	// makes the leader miss a heartbeat gets the next attempt, on a job of
	// its own.
	for attempt := 1; ; attempt++ {
		err := forwardAssignAndReports(t, f, fmt.Sprintf("j-%d", attempt), "r-1")
		if err == nil {
			break
		}
		if !errors.Is(err, rpcserver.ErrNoLeader) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on a fresh job", attempt, err)
	}
}

// forwardAssignAndReports submits job id through f, assigns it to runner
// through f and reports its start through f under its lease and under a
// stale one, checking the leader's results as they come back.
func forwardAssignAndReports(t *testing.T, f *Server, id, runner string) error {
	t.Helper()
	ctx := context.Background()
	submitJob(t, f, id)
	res, err := f.Apply(ctx, fsm.AssignJobsType, &pb.AssignJobsEntry{Time: timestamppb.Now(),
		Assignments: []*pb.Assignment{{JobId: id, RunnerId: runner}}})
	if err != nil {
		return err
	}
	if got := res.(*fsm.AssignResult).Assigned; len(got) != 1 || got[0] != id {
		t.Fatalf("assigned through the follower: %v, want [%s]", got, id)
	}
	j := waitJob(t, f, id, rpc.JobAssigned, runner)
	// The follower gets the leader's verdict on each report, as sentinels.
	res, err = f.Apply(ctx, fsm.RunnerReportsType, &pb.RunnerReportsEntry{Time: timestamppb.Now(), Reports: []*pb.RunnerMessage{
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: id, Lease: j.Lease, Time: timestamppb.Now()}}},
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: id, Lease: j.Lease + 1000, Time: timestamppb.Now()}}},
	}})
	if err != nil {
		return err
	}
	errs := res.(*fsm.ReportsResult).Errors
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], state.ErrStaleLease) {
		t.Fatalf("report outcomes through the follower: %v, want [nil, stale lease]", errs)
	}
	waitJob(t, f, id, rpc.JobRunning, runner)
	return nil
}

// A write the state machine refuses fails alike on the leader and on a
// follower that forwarded it: the same sentinel (so the same RPC code)
// and the same message.
func TestForwardedRefusalsMatchTheLeaders(t *testing.T) {
	leader, follower, _ := leaderAndFollower(t, nil)
	l, f := leader.Server(), follower.Server()
	addRunner(t, l, "r-1")
	submitJob(t, l, "j-pending")
	submitJob(t, l, "j-assigned")
	// Retried, so perhaps applied twice: the second time assigns nothing.
	applyRetried(t, l, fsm.AssignJobsType, &pb.AssignJobsEntry{Time: timestamppb.Now(),
		Assignments: []*pb.Assignment{{JobId: "j-assigned", RunnerId: "r-1"}}})
	lease := waitJob(t, f, "j-assigned", rpc.JobAssigned, "r-1").Lease
	for _, c := range []struct {
		name  string
		t     fsm.MessageType
		body  proto.Message
		error error
	}{
		{"not found", fsm.PinJobType, &pb.PinJobEntry{JobId: "j-none", Pinned: true, Time: timestamppb.Now()}, state.ErrNotFound},
		{"conflict", fsm.RetryJobType, &pb.RetryJobEntry{JobId: "j-pending", Time: timestamppb.Now()}, state.ErrConflict},
		{"stale lease", fsm.FinishJobType, &pb.FinishJobEntry{Report: &pb.JobFinished{JobId: "j-assigned", Lease: lease + 1000, Outcome: "succeeded", Time: timestamppb.Now()}}, state.ErrStaleLease},
		{"invalid entry", fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-bad", Name: "not a name", Capacity: 1}}, fsm.ErrInvalidEntry},
	} {
		t.Run(c.name, func(t *testing.T) {
			lerr, ferr := refusal(t, l, c.t, c.body), refusal(t, f, c.t, c.body)
			if !errors.Is(lerr, c.error) || !errors.Is(ferr, c.error) {
				t.Fatalf("leader: %v; follower: %v; want both %v", lerr, ferr, c.error)
			}
			if lerr.Error() != ferr.Error() {
				t.Fatalf("leader says %q, the follower %q", lerr, ferr)
			}
		})
	}
}

// refusal applies an entry that must be refused through s, and returns
// the refusal. A refused entry changes nothing, so one that fails for want
// of a leader is sent again, as clients do.
func refusal(t *testing.T, s *Server, typ fsm.MessageType, body proto.Message) error {
	t.Helper()
	var refused error
	testwait.For(t, 10*time.Second, func() (bool, error) {
		_, refused = s.Apply(context.Background(), typ, body)
		if errors.Is(refused, rpcserver.ErrNoLeader) {
			return false, refused
		}
		return true, nil
	})
	return refused
}

// Through the API, a refused write and a missing job answer the same code
// and message on the leader and on a follower.
func TestForwardedAPIErrorsMatchTheLeaders(t *testing.T) {
	leader, follower, _ := leaderAndFollower(t, nil)
	token := BootstrapTestACL(t, leader, follower)
	submitJob(t, leader.Server(), "j-pending")
	waitJob(t, follower.Server(), "j-pending", rpc.JobPending, "")
	jobs := func(a *Agent) outpostv1connect.JobServiceClient {
		c, err := rpc.NewClientTLS(a.URL(), TestHTTPClient(t), nil, rpc.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		return c.Jobs
	}
	for _, c := range []struct {
		name string
		call func(outpostv1connect.JobServiceClient) error
		code connect.Code
	}{
		{"retry a pending job", func(c outpostv1connect.JobServiceClient) error {
			_, err := c.RetryJob(context.Background(), connect.NewRequest(&pb.RetryJobRequest{Id: "j-pending"}))
			return err
		}, connect.CodeFailedPrecondition},
		{"cancel a job that does not exist", func(c outpostv1connect.JobServiceClient) error {
			_, err := c.CancelJob(context.Background(), connect.NewRequest(&pb.CancelJobRequest{Id: "j-none"}))
			return err
		}, connect.CodeNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Unavailable is what clients retry: a leader that missed a
			// heartbeat on a loaded machine.
			call := func(a *Agent) error {
				var err error
				testwait.For(t, 10*time.Second, func() (bool, error) {
					err = c.call(jobs(a))
					return connect.CodeOf(err) != connect.CodeUnavailable, err
				})
				return err
			}
			lerr, ferr := call(leader), call(follower)
			if connect.CodeOf(lerr) != c.code || connect.CodeOf(ferr) != c.code {
				t.Fatalf("leader: %v; follower: %v; want both %v", lerr, ferr, c.code)
			}
			if lerr.Error() != ferr.Error() {
				t.Fatalf("leader says %q, the follower %q", lerr, ferr)
			}
		})
	}
}

// A consistent read on a follower sees every write the leader has
// acknowledged, though the follower learns of commits only with the
// leader's next message: the read barrier asks the leader how far to wait.
func TestFollowerReadSeesLeaderWrite(t *testing.T) {
	leader, follower, _ := leaderAndFollower(t, nil)
	l, f := leader.Server(), follower.Server()
	ctx := context.Background()
	for i := range 20 {
		id := fmt.Sprintf("r-%d", i)
		addRunner(t, l, id)
		testwait.For(t, 10*time.Second, func() (bool, error) {
			err := f.ReadBarrier(ctx, false)
			if err != nil && !errors.Is(err, rpcserver.ErrNoLeader) {
				return false, testwait.Abort(err)
			}
			return err == nil, err // no leader: retried, as clients do
		})
		if _, err := f.State().RunnerByID(nil, id); err != nil {
			t.Fatalf("write %d acknowledged by the leader, not seen by a consistent read on the follower: %v", i, err)
		}
	}
}

// Whatever way a write or read fails for want of a leader, it fails with
// rpcserver.ErrNoLeader (Unavailable through the API), which clients retry: a
// "leader" that no longer leads, and a server left without a quorum.
func TestNoLeaderIsRetryable(t *testing.T) {
	leader, follower, all := leaderAndFollower(t, nil)
	f := follower.Server()
	var other *Agent
	for _, a := range all {
		if a != leader && a != follower {
			other = a
		}
	}
	// Forwarded to a server that does not lead (as to a leader deposed
	// since the follower looked). Should a loaded machine have made it
	// the leader meanwhile, the write goes through, and is sent again.
	data, err := fsm.Encode(fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Capacity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, func() (bool, error) {
		target := other
		if target.Server().IsLeader() {
			target = leader
		}
		_, _, err := f.forward(context.Background(), target.Server().httpAddr, fsm.UpsertRunnerType, nil, data)
		if err == nil {
			return false, fmt.Errorf("%s took the write: it leads now", target.cfg.NodeID)
		}
		if !errors.Is(err, rpcserver.ErrNoLeader) {
			return false, testwait.Abort(fmt.Errorf("forwarding to a follower: %w, want %w", err, rpcserver.ErrNoLeader))
		}
		return true, nil
	})
	// Left alone: no quorum, no leader.
	StopTestServer(t, leader)
	StopTestServer(t, other)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := f.Apply(ctx, fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Capacity: 1}}); !errors.Is(err, rpcserver.ErrNoLeader) {
		t.Fatalf("write without a quorum: %v, want %v", err, rpcserver.ErrNoLeader)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := f.ReadBarrier(ctx, false); !errors.Is(err, rpcserver.ErrNoLeader) {
		t.Fatalf("consistent read without a quorum: %v, want %v", err, rpcserver.ErrNoLeader)
	}
	if err := f.ReadBarrier(context.Background(), true); err != nil {
		t.Fatalf("stale read without a quorum: %v, want it served", err)
	}
}
