package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// Helpers shared by the tests on in-process servers.

// applyRetried applies an entry through s as a client would: retried
// while there is no leader to take it, as happens now and then when a
// loaded machine makes a test server miss a heartbeat. Only for entries
// that change nothing when applied twice.
func applyRetried(t *testing.T, s *Server, typ fsm.MessageType, body proto.Message) any {
	t.Helper()
	var res any
	testwait.For(t, 10*time.Second, func() (bool, error) {
		var err error
		res, err = s.Apply(context.Background(), typ, body)
		switch {
		case errors.Is(err, rpcserver.ErrNoLeader):
			return false, err
		case err != nil:
			return false, testwait.Abort(fmt.Errorf("%s through %s: %w", typ, s.cfg.NodeID, err))
		}
		return true, nil
	})
	return res
}

// addRunner records an adopted, ready runner of capacity 1 through s.
func addRunner(t *testing.T, s *Server, id string) {
	t.Helper()
	r := &pb.Runner{Id: id, Name: id, Capacity: 1, Status: rpc.RunnerAdopted, State: rpc.RunnerReady, LastSeen: timestamppb.Now()}
	applyRetried(t, s, fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: r})
}

// submitJob submits one job, for any runner, through s.
func submitJob(t *testing.T, s *Server, id string) {
	t.Helper()
	j := &pb.Job{Id: id, Project: "p", Name: "noop", CreatedAt: timestamppb.Now()}
	applyRetried(t, s, fsm.SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{j}})
}

// waitJob waits until job id, in s's copy of the state, is in status and
// (if runner is not "") assigned to runner, and returns it.
func waitJob(t *testing.T, s *Server, id, status, runner string) *pb.Job {
	t.Helper()
	var j *pb.Job
	testwait.For(t, 10*time.Second, func() (bool, error) {
		var err error
		if j, err = s.State().JobByID(nil, id); err != nil {
			return false, err
		}
		if j.Status != status || (runner != "" && j.RunnerId != runner) {
			return false, fmt.Errorf("job %s is %s on runner %q (%s), want %s on %q", id, j.Status, j.RunnerId, j.StatusReason, status, runner)
		}
		return true, nil
	})
	return j
}

// dispatches checks that s's dispatcher runs: a job submitted through s
// goes to a runner streaming to s.
func dispatches(t *testing.T, s *Server, job string) {
	t.Helper()
	runner := "r-" + job
	addRunner(t, s, runner)
	t.Cleanup(s.RunnerConnected(runner))
	submitJob(t, s, job)
	waitJob(t, s, job, rpc.JobAssigned, runner)
}

// work reports what leader work s runs: whether leadership is established
// and the channel that closes when its work has stopped (nil if none).
func work(s *Server) (ready bool, running <-chan struct{}) {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.dispatcher == nil {
		return s.leaderReady.Load(), nil
	}
	return s.leaderReady.Load(), s.leaderDone
}

// flakyBarrier is a Raft barrier that fails while failing says so.
type flakyBarrier struct {
	calls   atomic.Int32
	failing func(call int32) bool
}

var errInjected = errors.New("injected barrier failure")

func (b *flakyBarrier) hook(s *Server) {
	s.raftBarrier = func(timeout time.Duration) error {
		if b.failing(b.calls.Add(1)) {
			return errInjected
		}
		return s.raft.Barrier(timeout).Error()
	}
}

// A new leader whose barrier fails retries it with backoff and, once it
// succeeds, establishes leadership: the dispatcher runs.
func TestLeaderRetriesFailedBarrier(t *testing.T) {
	b := &flakyBarrier{failing: func(call int32) bool { return call <= 3 }}
	start := time.Now()
	a := testServer(t, nil, b.hook)
	s := WaitForLeader(t, a).Server()
	t.Logf("leadership established after %d barriers, %v after start", b.calls.Load(), time.Since(start).Round(time.Millisecond))
	if n := b.calls.Load(); n != 4 {
		t.Fatalf("%d barriers, want 3 failed and 1 that worked", n)
	}
	dispatches(t, s, "j-after-retries")
}

// A leader that cannot establish leadership hands it over: a healthy
// server takes it, establishes it and dispatches, and the sick one runs
// no leader work.
func TestLeaderHandsOverWhenBarrierKeepsFailing(t *testing.T) {
	var (
		mu    sync.Mutex
		sick  string // the first server to win an election
		calls = map[string]int{}
	)
	hook := func(s *Server) {
		s.raftBarrier = func(timeout time.Duration) error {
			mu.Lock()
			if sick == "" {
				sick = s.cfg.NodeID
			}
			calls[s.cfg.NodeID]++
			fail := sick == s.cfg.NodeID
			mu.Unlock()
			if fail {
				return errInjected
			}
			return s.raft.Barrier(timeout).Error()
		}
	}
	agents := testCluster(t, 3, nil, hook)
	leader := WaitForLeader(t, agents...).Server()
	mu.Lock()
	sickName, sickCalls := sick, calls[sick]
	mu.Unlock()
	t.Logf("%s failed %d barriers; %s leads", sickName, sickCalls, leader.cfg.NodeID)
	if leader.cfg.NodeID == sickName {
		t.Fatalf("%s leads with a failing barrier", sickName)
	}
	if sickCalls < establishAttempts {
		t.Fatalf("%s tried %d barriers before handing over, want %d", sickName, sickCalls, establishAttempts)
	}
	for _, a := range agents {
		if a.cfg.NodeID != sickName {
			continue
		}
		if ready, running := work(a.Server()); ready || running != nil {
			t.Fatalf("%s, whose barrier fails, runs leader work (ready %v)", sickName, ready)
		}
	}
	dispatches(t, leader, "j-after-handover")
}

// A leader alone, with no one to hand over to, never gives up: it keeps
// trying, runs no leader work meanwhile, and establishes leadership once
// its barrier works again.
func TestLeaderAloneKeepsTrying(t *testing.T) {
	var healed atomic.Bool
	b := &flakyBarrier{failing: func(int32) bool { return !healed.Load() }}
	a := testServer(t, nil, b.hook)
	s := a.Server()
	// Past the first round of attempts and the failed handover.
	testwait.For(t, 10*time.Second, func() (bool, error) {
		n := b.calls.Load()
		return n > establishAttempts+1, fmt.Errorf("%d barriers tried", n)
	})
	if !s.IsLeader() {
		t.Fatal("the only server does not lead")
	}
	if ready, running := work(s); ready || running != nil {
		t.Fatalf("leader work runs (ready %v) though no barrier worked", ready)
	}
	healed.Store(true)
	WaitForLeader(t, a)
	dispatches(t, s, "j-after-healing")
}

// Losing leadership stops everything the leader started (dispatcher,
// reaper, garbage collector, member reconciliation), and the server that
// takes over starts its own.
func TestRevokeStopsLeaderWork(t *testing.T) {
	agents := TestCluster(t, 3, nil)
	old := WaitForLeader(t, agents...).Server()
	_, running := work(old)
	if running == nil {
		t.Fatal("the leader runs no leader work")
	}
	if err := old.raft.LeadershipTransfer().Error(); err != nil {
		// Lost already (a loaded machine): its work stopped then.
		t.Logf("leadership transfer: %v", err)
	}
	select {
	case <-running:
	case <-time.After(10 * time.Second):
		t.Fatal("the old leader's work did not stop within 10s of losing leadership")
	}
	dispatches(t, WaitForLeader(t, agents...).Server(), "j-new-leader")
}

// A job waiting when the leader dies is dispatched by the next leader,
// which rebuilt its dispatcher from the state.
func TestNewLeaderDispatchesWaitingJob(t *testing.T) {
	agents := TestCluster(t, 3, nil)
	leader := WaitForLeader(t, agents...)
	var rest []*Agent
	for _, a := range agents {
		if a != leader {
			rest = append(rest, a)
		}
	}
	// No runner yet: the job waits.
	submitJob(t, leader.Server(), "j-waiting")
	waitJob(t, rest[0].Server(), "j-waiting", rpc.JobPending, "")
	StopTestServer(t, leader)
	next := WaitForLeader(t, rest...).Server()
	addRunner(t, next, "r-next")
	t.Cleanup(next.RunnerConnected("r-next"))
	waitJob(t, next, "j-waiting", rpc.JobAssigned, "r-next")
}

// Member reconciliation is leader work: a server that joins the gossip
// pool is made a voter by the leader, and follows it.
func TestLeaderAddsJoiningServer(t *testing.T) {
	agents := TestCluster(t, 3, nil)
	cfg := TestConfig(t, "s4")
	cfg.BootstrapExpect = 3
	cfg.RetryJoin = []string{agents[0].GossipAddr()}
	joined := startTestAgent(t, cfg, newTestLogs(t), nil)
	testwait.For(t, 10*time.Second, func() (bool, error) {
		// Every server knows the latest configuration, committed or not.
		fut := agents[0].Server().raft.GetConfiguration()
		if err := fut.Error(); err != nil {
			return false, err
		}
		for _, srv := range fut.Configuration().Servers {
			if srv.ID == "s4" && srv.Suffrage == raft.Voter {
				return true, nil
			}
		}
		return false, fmt.Errorf("s4 is not a voter in the raft configuration %v", fut.Configuration().Servers)
	})
	WaitForLeader(t, append(agents, joined)...)
}
