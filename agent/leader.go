package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/agent/dispatch"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Everything a leader does beyond Raft (the dispatcher, the reaper, the
// garbage collector and member reconciliation) starts in
// establishLeadership and stops in revokeLeadership, so it all runs
// together or not at all. A server that wins an election but cannot
// establish leadership does not sit as a leader that does nothing: it
// retries, and if it still cannot, hands leadership to another server.

// establishAttempts is how many barriers a new leader tries before it
// hands leadership over: a barrier fails when Raft cannot commit, and a
// few failures in a row say this server is not fit to lead.
const establishAttempts = 5

// barrierTimeout bounds how long a barrier waits to enter Raft's queue; once
// queued, it takes as long as applying the entries of earlier terms does.
const barrierTimeout = time.Minute

// errLeadershipEnded is returned by establishLeadership when leadership
// was lost, or the server shut down, before it was established.
var errLeadershipEnded = errors.New("leadership ended before it was established")

// monitorLeadership runs the leader loop while Raft says this server leads.
// Raft's notifications alternate, in order, so one loop at most runs.
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	var stop, done chan struct{}
	end := func() {
		if stop == nil {
			return
		}
		close(stop)
		<-done
		stop, done = nil, nil
	}
	for {
		select {
		case <-s.shutdownCh:
			end()
			return
		case isLeader := <-s.raftNotifyCh:
			if !isLeader {
				end()
				continue
			}
			if stop != nil {
				continue
			}
			stop, done = make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				s.leaderLoop(stop)
			}()
		}
	}
}

// leaderLoop runs from winning an election until stop closes (leadership
// lost, or shutdown). It establishes leadership, retrying; if that keeps
// failing, it hands leadership to another server and, should that fail
// too (no other voter is up to date), tries again after a pause: it never
// gives up while Raft says this server leads.
func (s *Server) leaderLoop(stop <-chan struct{}) {
	pause := s.establishPause()
	for {
		err := s.establishLeadership(stop)
		if err == nil {
			<-stop
			s.revokeLeadership()
			return
		}
		if errors.Is(err, errLeadershipEnded) {
			return
		}
		switch {
		case s.raft.State() != raft.Leader:
			// Lost already: Raft's notification closes stop.
		default:
			s.logger.Error("cannot establish leadership; handing it to another server", "attempts", establishAttempts, "error", err)
			if terr := s.raft.LeadershipTransfer().Error(); terr != nil {
				s.logger.Error("handing leadership over failed; trying again to establish it", "error", terr, "retry_in", pause)
			} else {
				// Raft's notification that this server lost leadership
				// closes stop; should it still lead after the pause, it
				// tries again.
				s.logger.Info("handed leadership over")
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(pause):
		}
	}
}

// establishPause is how long a leader that could not hand leadership over
// waits before it tries to establish it again; half of it bounds the wait
// between failed barriers, which starts at a sixteenth. All scale with
// Raft's election timeout, the time the cluster takes to notice a dead
// leader: with the default timings a new leader tries for about four
// seconds before it hands over, an in-process test server for 200ms.
func (s *Server) establishPause() time.Duration {
	return max(4*s.cfg.RaftTiming.ElectionTimeout, 20*time.Millisecond)
}

// establishLeadership waits until every entry committed by earlier leaders
// is applied (a barrier), retrying with backoff, then starts the leader's
// work on that state. It returns errLeadershipEnded if stop closes first,
// and the last barrier's error after establishAttempts failures.
func (s *Server) establishLeadership(stop <-chan struct{}) error {
	wait := max(s.cfg.RaftTiming.ElectionTimeout/4, 5*time.Millisecond)
	for attempt := 1; ; attempt++ {
		err := s.waitBarrier(stop)
		if err == nil {
			s.startLeaderWork()
			return nil
		}
		if errors.Is(err, errLeadershipEnded) || attempt == establishAttempts {
			return err
		}
		s.logger.Warn("barrier after gaining leadership failed; retrying", "attempt", attempt, "attempts", establishAttempts, "error", err, "retry_in", wait)
		select {
		case <-stop:
			return errLeadershipEnded
		case <-time.After(wait):
		}
		wait = min(2*wait, s.establishPause()/2)
	}
}

// waitBarrier runs one barrier, giving up on it if stop closes first (the
// barrier itself ends soon after, with leadership lost or Raft shut down).
func (s *Server) waitBarrier(stop <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		if s.raftBarrier != nil {
			errc <- s.raftBarrier(barrierTimeout)
			return
		}
		errc <- s.raft.Barrier(barrierTimeout).Error()
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("barrier: %w", err)
		}
		return nil
	case <-stop:
		return errLeadershipEnded
	}
}

// startLeaderWork rebuilds the leader's in-memory work from the state, now
// complete, and starts it: the dispatcher, the reaper, the garbage
// collector and the reconciliation of gossip members into Raft.
func (s *Server) startLeaderWork() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d := dispatch.New(dispatch.Config{
		State:  s.State,
		Apply:  s.Apply,
		Usable: s.liveness.Usable,
		Logger: s.logger,
		Stats:  &s.dispatchStats,
	})
	s.leaderMu.Lock()
	s.leaderCancel, s.leaderDone, s.dispatcher = cancel, done, d
	s.leaderMu.Unlock()
	// Only now is the state complete: reads and registrations were refused
	// (as retryable) until the barrier had replayed every earlier entry.
	s.leaderReady.Store(true)
	s.liveness.onOpenSet(d.Kick)
	since := time.Now()
	var wg sync.WaitGroup
	for _, loop := range []func(){
		func() { s.reap(ctx, since) },
		func() { s.collectLoop(ctx) },
		func() { s.tokenGCLoop(ctx) },
		func() { s.reconcileLoop(ctx) },
		func() { s.seedKeyring(ctx) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); loop() }()
	}
	go func() {
		defer close(done)
		d.Run(ctx)
		wg.Wait()
	}()
	s.logger.Info("gained leadership: dispatcher, reaper, garbage collector and member reconciliation running")
}

// revokeLeadership stops the leader's work, if it runs, and waits until
// all of it has stopped.
func (s *Server) revokeLeadership() {
	s.leaderReady.Store(false)
	s.leaderMu.Lock()
	cancel, done := s.leaderCancel, s.leaderDone
	s.leaderCancel, s.leaderDone, s.dispatcher = nil, nil, nil
	s.leaderMu.Unlock()
	if cancel == nil {
		return
	}
	s.liveness.onOpenSet(nil)
	cancel()
	<-done
	s.logger.Info("leader work stopped")
}

// reap watches runner liveness: a runner silent past the timeout is marked
// down and its jobs handed back (requeued or lost, per their retry policy);
// a runner heard from again is marked ready. It also takes back assignments
// whose runner has not confirmed the start within the start timeout, so no
// job waits in assigned without end. Deadlines count from the later of the
// state's timestamps and this leadership's start, so a new leader gives
// every runner the full grace again.
func (s *Server) reap(ctx context.Context, since time.Time) {
	t := time.NewTicker(min(max(s.cfg.RunnerTimeout/4, 100*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		st := s.State()
		late := &pb.MarkLostEntry{AssignedOnly: true, Time: timestamppb.New(now),
			Reason: "its runner did not confirm the start within " + s.cfg.StartTimeout.String()}
		for _, r := range st.Runners(nil) {
			gone := s.liveness.Gone(r.Id, since, now)
			switch {
			case !gone && r.State == rpc.RunnerDown && s.liveness.Usable(r.Id):
				s.markRunner(ctx, r.Id, state.RunnerReady, "")
			case gone && r.State != rpc.RunnerDown:
				s.markRunner(ctx, r.Id, state.RunnerDown, "no word from the runner for "+s.cfg.RunnerTimeout.String())
			}
			active := st.ActiveJobs(nil, r.Id)
			if len(active) == 0 {
				continue
			}
			if !gone {
				for _, j := range active {
					if j.Status == rpc.JobAssigned && startOverdue(j, since, now, s.cfg.StartTimeout) {
						late.Jobs = append(late.Jobs, &pb.LostJob{JobId: j.Id, Lease: j.Lease})
					}
				}
				continue
			}
			if !s.liveness.BeginReap(r.Id, since, now) {
				continue // heard from just now
			}
			entry := &pb.MarkLostEntry{
				Reason: "runner " + r.Id + " stopped responding for " + s.cfg.RunnerTimeout.String(),
				Time:   timestamppb.New(now),
			}
			for _, j := range active {
				entry.Jobs = append(entry.Jobs, &pb.LostJob{JobId: j.Id, Lease: j.Lease})
			}
			_, err := s.Apply(ctx, fsm.MarkLostType, entry)
			s.liveness.EndReap(r.Id)
			if err != nil {
				s.logger.Warn("could not hand back the jobs of a gone runner", "runner", r.Id, "error", err)
				continue
			}
			s.logger.Warn("runner gone; its jobs were handed back", "runner", r.Id, "jobs", len(entry.Jobs))
		}
		if len(late.Jobs) == 0 {
			continue
		}
		if _, err := s.Apply(ctx, fsm.MarkLostType, late); err != nil {
			s.logger.Warn("could not take back assignments not started in time", "jobs", len(late.Jobs), "error", err)
			continue
		}
		s.logger.Warn("took back assignments their runners did not start in time", "jobs", len(late.Jobs), "start_timeout", s.cfg.StartTimeout)
	}
}

// startOverdue reports whether an assigned job's runner has had its time to
// confirm the start.
func startOverdue(j *pb.Job, since, now time.Time, timeout time.Duration) bool {
	from := since
	if at := j.AssignedAt.AsTime(); j.AssignedAt != nil && at.After(from) {
		from = at
	}
	return now.Sub(from) > timeout
}

func (s *Server) markRunner(ctx context.Context, id, action, reason string) {
	entry := &pb.RunnerUpdateEntry{RunnerId: id, Action: action, Reason: reason, Time: timestamppb.Now()}
	if _, err := s.Apply(ctx, fsm.UpdateRunnerType, entry); err != nil {
		s.logger.Warn("recording runner liveness", "runner", id, "state", action, "error", err)
		return
	}
	s.logger.Info("runner liveness changed", "runner", id, "state", action)
}
