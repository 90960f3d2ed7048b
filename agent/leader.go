package agent

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/agent/dispatch"
	"github.com/outpost-run/outpost/fsm"
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
		Usable: s.liveness.Connectable,
		Logger: s.logger,
	})
	s.leaderMu.Lock()
	s.leaderCancel, s.leaderDone, s.dispatcher = cancel, done, d
	s.leaderMu.Unlock()
	s.liveness.onOpenSet(d.Kick)
	since := time.Now()
	go func() {
		defer close(done)
		reaperDone := make(chan struct{})
		go func() { defer close(reaperDone); s.reap(ctx, since) }()
		d.Run(ctx)
		<-reaperDone
	}()
	s.logger.Info("gained leadership: dispatcher and reaper running")
}

// revokeLeadership stops the leader's loops, if they run.
func (s *Server) revokeLeadership() {
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

// reap finds runners that are gone while holding jobs and hands those jobs
// back: requeued or lost, per their retry policy.
func (s *Server) reap(ctx context.Context, since time.Time) {
	t := time.NewTicker(s.cfg.RunnerTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		st := s.State()
		for _, r := range st.Runners(nil) {
			if !s.liveness.Gone(r.Id, since, now) {
				continue
			}
			active := st.ActiveJobs(nil, r.Id)
			if len(active) == 0 {
				continue
			}
			entry := &pb.MarkLostEntry{
				Reason: "runner " + r.Id + " stopped responding for " + s.cfg.RunnerTimeout.String(),
				Time:   timestamppb.New(now),
			}
			for _, j := range active {
				entry.Jobs = append(entry.Jobs, &pb.LostJob{JobId: j.Id, Lease: j.Lease})
			}
			if _, err := s.Apply(ctx, fsm.MarkLostType, entry); err != nil {
				s.logger.Warn("could not mark jobs of a gone runner lost", "runner", r.Id, "error", err)
				continue
			}
			s.logger.Warn("runner gone; its jobs were handed back", "runner", r.Id, "jobs", len(entry.Jobs))
		}
	}
}
