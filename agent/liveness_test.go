package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Liveness on its own: its verdicts depend only on what it was told and
// the times it is asked about, so they are checked at chosen instants.
func TestLivenessGone(t *testing.T) {
	const timeout = time.Second
	since := time.Now()
	for _, c := range []struct {
		name   string
		tell   func(l *Liveness)
		at     time.Duration // after since
		gone   bool
		usable bool // asked at about since
	}{
		{"never heard, within the grace of a new leadership", nil, timeout - time.Millisecond, false, false},
		{"never heard, past the grace", nil, timeout + time.Millisecond, true, false},
		{"streaming", func(l *Liveness) { l.Connected("r") }, timeout / 2, false, true},
		{"stream closed", func(l *Liveness) { l.Connected("r")() }, 2 * timeout, true, false},
		{"gossip vouches for a silent runner a while", func(l *Liveness) { l.Gossip("r", true) }, 2 * timeout, false, false},
		{"gossip alone holds it only so long", func(l *Liveness) { l.Gossip("r", true) }, gossipGrace*timeout + time.Millisecond, true, false},
		{"gossip says dead", func(l *Liveness) { l.Gossip("r", false) }, timeout + time.Millisecond, true, false},
		{"a follower streams it", func(l *Liveness) { l.Remote("s2", []string{"r"}, nil) }, timeout / 2, false, true},
		{"a follower last heard it long ago", func(l *Liveness) { l.Remote("s2", []string{"r"}, []uint32{uint32(2 * timeout / time.Millisecond)}) }, timeout / 2, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := NewLiveness(timeout)
			if c.tell != nil {
				c.tell(l)
			}
			if got := l.Gone("r", since, since.Add(c.at)); got != c.gone {
				t.Errorf("gone %v after %v, want %v", got, c.at, c.gone)
			}
			if got := l.Usable("r"); got != c.usable {
				t.Errorf("usable %v, want %v", got, c.usable)
			}
		})
	}
}

// A follower's report counts from when the follower last heard the runner,
// not from when the report arrived.
func TestLivenessRemoteSilence(t *testing.T) {
	l := NewLiveness(time.Second)
	l.Remote("s2", []string{"r"}, []uint32{1500})
	now := time.Now()
	if !l.Gone("r", now.Add(-time.Hour), now) {
		t.Fatal("a runner the follower last heard 1.5s ago is not gone with a 1s timeout")
	}
	if !l.Usable("r") {
		t.Fatal("a runner streaming to a follower that just reported is not usable")
	}
}

// While a runner is being reaped no lease confirmation for it goes
// through, and a second reap of it does not begin.
func TestLivenessReapFencesConfirmations(t *testing.T) {
	l := NewLiveness(time.Second)
	since := time.Now().Add(-time.Hour)
	if !l.BeginReap("r", since, time.Now()) {
		t.Fatal("a silent runner's reap did not begin")
	}
	if l.BeginReap("r", since, time.Now()) {
		t.Fatal("a second reap of the same runner began")
	}
	waited := make(chan error, 1)
	go func() { waited <- l.awaitReaps(context.Background(), []string{"other", "r"}) }()
	select {
	case err := <-waited:
		t.Fatalf("a confirmation went through during the reap (%v)", err)
	case <-time.After(20 * time.Millisecond):
	}
	l.EndReap("r")
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	l.Connected("r")
	if l.BeginReap("r", since, time.Now()) {
		t.Fatal("a reap began for a runner that just opened a stream")
	}
}

// liveCluster is three servers whose runners count as gone after half a
// second of silence; assignments never time out on their own.
func liveCluster(t *testing.T) (leader, follower *Server) {
	t.Helper()
	l, f, _ := leaderAndFollower(t, func(c *Config) {
		c.RunnerTimeout = 500 * time.Millisecond
		c.StartTimeout = time.Hour
	})
	return l.Server(), f.Server()
}

// heartbeats keeps a runner alive through s, as its stream does: each
// heartbeat refreshes it and asks for its leases to be confirmed through
// the leader. The returned func stops them and says when the last one was.
func heartbeats(t *testing.T, s *Server, id string) (stop func() time.Time) {
	t.Helper()
	done := make(chan struct{})
	last := make(chan time.Time, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			beat := time.Now()
			s.RunnerSeen(id)
			s.ConfirmRunner(id, func(error) {})
			select {
			case <-done:
				last <- beat
				return
			case <-tick.C:
			}
		}
	}()
	var (
		stopped  bool
		lastBeat time.Time
	)
	stop = func() time.Time {
		if !stopped {
			stopped = true
			close(done)
			lastBeat = <-last
		}
		return lastBeat
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitRunnerDown waits until s's copy of the state has runner id down, and
// returns when the test saw it.
func waitRunnerDown(t *testing.T, s *Server, id string) time.Time {
	t.Helper()
	testwait.For(t, 10*time.Second, func() (bool, error) {
		r, err := s.State().RunnerByID(nil, id)
		if err != nil {
			return false, err
		}
		return r.State == rpc.RunnerDown, fmt.Errorf("runner %s is %s", id, r.State)
	})
	return time.Now()
}

// A runner streaming to a follower is usable by the leader's dispatcher
// through the follower's reports, is kept alive by its heartbeats past
// the timeout, and once its stream closes is found gone after the timeout:
// marked down, its job handed back.
func TestLivenessOfRunnerOnFollower(t *testing.T) {
	leader, follower := liveCluster(t)
	addRunner(t, follower, "r-f")
	closeStream := follower.RunnerConnected("r-f")
	stop := heartbeats(t, follower, "r-f")
	testwait.For(t, 10*time.Second, func() (bool, error) {
		return leader.liveness.Usable("r-f"), fmt.Errorf("the leader does not count r-f, streaming to %s, as usable", follower.cfg.NodeID)
	})
	submitJob(t, follower, "j-1")
	waitJob(t, follower, "j-1", rpc.JobAssigned, "r-f")

	// Alive for several timeouts while its heartbeats come.
	deadline := time.Now().Add(2 * leader.cfg.RunnerTimeout)
	for time.Now().Before(deadline) {
		if r, _ := follower.State().RunnerByID(nil, "r-f"); r.State != rpc.RunnerReady {
			t.Fatalf("runner r-f, heartbeating, went %s", r.State)
		}
		time.Sleep(leader.cfg.RunnerTimeout / 10)
	}

	silent := stop()
	closeStream()
	down := waitRunnerDown(t, follower, "r-f")
	if took := down.Sub(silent); took < leader.cfg.RunnerTimeout {
		t.Fatalf("r-f marked down %v after its last heartbeat, before the %v timeout", took, leader.cfg.RunnerTimeout)
	}
	// Assigned, never started: handed back to wait for another runner.
	j := waitJob(t, follower, "j-1", rpc.JobPending, "")
	if j.RunnerId != "" {
		t.Fatalf("j-1, handed back, still names runner %s", j.RunnerId)
	}
	t.Logf("r-f down %v after its last heartbeat; j-1: %s", down.Sub(silent).Round(time.Millisecond), j.StatusReason)
}

// A new leader gives every runner the full timeout from its election: it
// has not heard from them, and must not hand back the jobs of a runner
// that was heartbeating to the old leader a moment ago.
func TestLivenessNewLeaderGivesFullGrace(t *testing.T) {
	leader, _ := liveCluster(t)
	addRunner(t, leader, "r-1")
	closeStream := leader.RunnerConnected("r-1")
	submitJob(t, leader, "j-1")
	waitJob(t, leader, "j-1", rpc.JobAssigned, "r-1")
	// The runner goes silent as leadership moves: the old leader heard it
	// just now, the new one never.
	closeStream()
	moved := time.Now()
	leader.RunnerSeen("r-1") // the old leader's last word of it, should it keep leading
	if err := leader.raft.LeadershipTransfer().Error(); err != nil {
		t.Logf("leadership transfer: %v (a loaded machine moved it already)", err)
	}
	down := waitRunnerDown(t, leader, "r-1")
	if took := down.Sub(moved); took < leader.cfg.RunnerTimeout {
		t.Fatalf("r-1 marked down %v after leadership moved, before the %v timeout", took, leader.cfg.RunnerTimeout)
	}
	if j := waitJob(t, leader, "j-1", rpc.JobPending, ""); j.RunnerId != "" {
		t.Fatalf("j-1, handed back, still names runner %s", j.RunnerId)
	}
}

// A runner heard from again after it was marked down is marked ready.
func TestLivenessRunnerComesBack(t *testing.T) {
	leader, follower := liveCluster(t)
	addRunner(t, leader, "r-1")
	if _, err := leader.Apply(context.Background(), fsm.UpdateRunnerType, &pb.RunnerUpdateEntry{
		RunnerId: "r-1", Action: state.RunnerDown, Reason: "test", Time: timestamppb.Now()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(follower.RunnerConnected("r-1"))
	heartbeats(t, follower, "r-1")
	testwait.For(t, 10*time.Second, func() (bool, error) {
		r, err := leader.State().RunnerByID(nil, "r-1")
		if err != nil {
			return false, err
		}
		return r.State == rpc.RunnerReady, fmt.Errorf("runner r-1, streaming again, is %s", r.State)
	})
}
