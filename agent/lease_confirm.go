package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// leaseConfirmer answers runners' heartbeats with the leader's word that
// their leases still hold, and keeps the leader told which runners stream
// to this server.
//
// Why through the leader: only the leader gives a silent runner's jobs
// away, counting silence from the last time it heard of the runner, or
// from its own election if later. A heartbeat a runner sent at time s is
// confirmed once (1) the leader has recorded hearing from the runner no
// earlier than s, and (2) the leader has then verified with a quorum that
// it still leads. By (1) this leader cannot find the runner gone before
// s + lease period; by (2) any later leader was elected after the verify,
// so it cannot either. A runner that has stopped its jobs by s + lease
// period therefore never overlaps the attempt that replaces them. A
// follower that is cut off from the leader, or a leader that lost its
// quorum, confirms nothing, and its runners move elsewhere.
type leaseConfirmer struct {
	s *Server

	mu      sync.Mutex
	waiting []waitingConfirm
	// failingSince is when rounds started failing; zero while they work.
	failingSince time.Time
	lastErr      error

	kick chan struct{}
}

type waitingConfirm struct {
	runner string
	done   func(error)
}

// relayEvery is how often a follower reports its runner streams to the
// leader when no heartbeat is waiting: the leader's dispatcher counts a
// runner of a follower as usable while such reports keep coming.
const relayEvery = time.Second

// roundTimeout bounds one confirmation round. Rounds run one at a time,
// so a round stuck on a leader that froze would hold up every runner of
// this server, even after this server has become the leader itself: it
// must be short next to the move time.
const roundTimeout = time.Second

func newLeaseConfirmer(s *Server) *leaseConfirmer {
	return &leaseConfirmer{s: s, kick: make(chan struct{}, 1)}
}

// confirm queues done for the next round, which covers every heartbeat
// received before it starts.
func (c *leaseConfirmer) confirm(runner string, done func(error)) {
	c.mu.Lock()
	c.waiting = append(c.waiting, waitingConfirm{runner, done})
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *leaseConfirmer) run(shutdown <-chan struct{}) {
	t := time.NewTicker(relayEvery)
	defer t.Stop()
	for {
		select {
		case <-shutdown:
			c.fail(errors.New("server is shutting down"))
			return
		case <-t.C:
		case <-c.kick:
		case <-c.s.liveness.localChanged:
		}
		c.mu.Lock()
		batch := c.waiting
		c.waiting = nil
		c.mu.Unlock()
		runners := make([]string, len(batch))
		for i, w := range batch {
			runners[i] = w.runner
		}
		start := time.Now()
		err := c.round(runners)
		if took := time.Since(start); took > roundTimeout/2 {
			c.s.logger.Debug("slow lease confirmation round", "took", took.Round(time.Millisecond), "runners", len(runners), "error", err)
		}
		c.mu.Lock()
		switch {
		case err == nil:
			c.failingSince, c.lastErr = time.Time{}, nil
		case c.failingSince.IsZero():
			c.failingSince, c.lastErr = time.Now(), err
		default:
			c.lastErr = err
		}
		c.mu.Unlock()
		for _, w := range batch {
			w.done(err)
		}
	}
}

// fail answers everything still waiting with err.
func (c *leaseConfirmer) fail(err error) {
	c.mu.Lock()
	batch := c.waiting
	c.waiting = nil
	c.mu.Unlock()
	for _, w := range batch {
		w.done(err)
	}
}

// round confirms once for the runners heard from: the leader waits out
// any hand-back of their jobs it decided and verifies that it leads; a
// follower reports its streams to the leader, which does the same.
func (c *leaseConfirmer) round(runners []string) error {
	s := c.s
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	if s.raft.State() == raft.Leader {
		if err := s.liveness.awaitReaps(ctx, runners); err != nil {
			return fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, err)
		}
		return s.verifyLeader(ctx)
	}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return fmt.Errorf("%w: server %s has no leader", rpcserver.ErrNoLeader, s.cfg.NodeID)
	}
	addr := s.httpAddrOf(string(id))
	if addr == "" {
		return fmt.Errorf("%w: leader %s has not announced its API address", rpcserver.ErrNoLeader, id)
	}
	ids, silent := s.liveness.Local()
	_, err := s.peers.cluster(addr).RunnerHeartbeats(ctx, connect.NewRequest(&pb.RunnerHeartbeatsRequest{
		Server: s.cfg.NodeID, RunnerIds: ids, SilentMs: silent,
	}))
	if err != nil {
		return fmt.Errorf("%w: leader %s did not confirm: %v", rpcserver.ErrNoLeader, id, err)
	}
	return nil
}

// serving reports whether this server's runners are being confirmed: nil,
// or, once rounds have failed for the move time, why its runners should
// go to another server.
func (c *leaseConfirmer) serving(move time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failingSince.IsZero() || time.Since(c.failingSince) < move {
		return nil
	}
	return fmt.Errorf("server %s has not been able to confirm runner leases for %s (%v); connect to another server",
		c.s.cfg.NodeID, time.Since(c.failingSince).Round(time.Second), c.lastErr)
}

// verifyLeader checks with a quorum that this server still leads. Calls
// that overlap share one round of heartbeats inside Raft.
func (s *Server) verifyLeader(ctx context.Context) error {
	fut := s.raft.VerifyLeader()
	errc := make(chan error, 1)
	go func() { errc <- fut.Error() }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, err)
		}
		// A leader still replaying earlier terms may confirm too: its
		// reaper counts silence from after that replay, later than any
		// heartbeat it confirms now.
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: verifying leadership: %v", rpcserver.ErrNoLeader, ctx.Err())
	}
}
