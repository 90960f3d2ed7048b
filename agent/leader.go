package agent

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/agent/dispatch"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// monitorLeadership starts the leader's loops when this server gains
// leadership and stops them when it loses it.
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	notify := s.raftNotify()
	for {
		select {
		case <-s.shutdownCh:
			return
		case isLeader := <-notify:
			if isLeader {
				s.establishLeadership()
			} else {
				s.revokeLeadership()
			}
		}
	}
}

func (s *Server) raftNotify() <-chan bool { return s.raftNotifyCh }

// establishLeadership waits until every entry committed by earlier leaders
// is applied, then rebuilds the leader's in-memory work from that state.
func (s *Server) establishLeadership() {
	s.revokeLeadership()
	if err := s.raft.Barrier(time.Minute).Error(); err != nil {
		s.logger.Error("barrier after gaining leadership failed", "error", err)
		return
	}
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
	go func() {
		defer close(done)
		reaperDone, gcDone := make(chan struct{}), make(chan struct{})
		go func() { defer close(reaperDone); s.reap(ctx, since) }()
		go func() { defer close(gcDone); s.collectLoop(ctx) }()
		d.Run(ctx)
		<-reaperDone
		<-gcDone
	}()
	s.logger.Info("gained leadership: dispatcher, reaper and garbage collector running")
}

// revokeLeadership stops the leader's loops, if they run.
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
	s.logger.Info("leader loops stopped")
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
