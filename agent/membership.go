package agent

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Membership: the gossip pool (gossip.go) says which servers exist; this
// file turns that into Raft's configuration. Every server bootstraps from
// it and rejoins failed members; the leader adds and removes voters
// (reconcileLoop, started and stopped with the rest of its work).

// setupGossip joins the memberlist pool and starts the loops that turn
// membership into Raft membership.
func (s *Server) setupGossip() error {
	g, err := StartGossip(GossipConfig{
		Name:      s.cfg.NodeID,
		BindAddr:  s.cfg.BindAddr,
		Advertise: s.cfg.Advertise,
		Port:      s.cfg.Ports.Gossip,
		Key:       s.cfg.GossipKey,
		DataDir:   s.cfg.DataDir,
		Fast:      s.cfg.RaftTiming.HeartbeatTimeout < time.Second,
		Logger:    s.logger,
		Meta: NodeMeta{
			Role:            RoleServer,
			HTTP:            s.httpAddr,
			Raft:            s.raftAddr,
			BootstrapExpect: s.cfg.BootstrapExpect,
			Bootstrapped:    s.hadState,
			Version:         Version,
		},
	})
	if err != nil {
		return err
	}
	s.gossip = g
	s.wg.Add(3)
	go s.watchKeyring()
	go func() {
		defer s.wg.Done()
		g.RetryJoin(s.cfg.RetryJoin, s.shutdownCh)
	}()
	go s.watchMembership()
	return nil
}

// watchMembership reacts to gossip on every server: before the cluster
// forms it bootstraps Raft once enough servers are seen; it keeps the list
// of server addresses and runners' gossip liveness current; and on the
// leader it wakes member reconciliation (reconcileLoop), which is leader
// work and runs only while leadership is established.
func (s *Server) watchMembership() {
	defer s.wg.Done()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	lastReconnect := time.Now()
	published := false
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-s.gossip.Events():
		case <-tick.C:
		}
		if time.Since(lastReconnect) > reconnectEvery {
			lastReconnect = time.Now()
			s.reconnectFailed()
		}
		if !published && s.leaderName() != "" {
			// Off this loop: publishing waits (up to seconds) until some
			// member has the news, and one that has none left to tell,
			// its peers gone, would hold up this loop and so Shutdown.
			published = true
			go s.gossip.SetBootstrapped()
		}
		s.refreshServerAddrs()
		for _, m := range s.gossip.Members() {
			if m.Meta.Role == RoleRunner {
				s.liveness.Gossip(m.Name, m.Status == "alive")
			}
		}
		if s.raft.State() == raft.Leader {
			select {
			case s.reconcileCh <- struct{}{}:
			default: // a reconciliation is already due
			}
		} else if !s.hadState && s.cfg.BootstrapExpect > 1 {
			s.maybeBootstrap()
		}
	}
}

// reconnectEvery is how often a server tries to reach members gossip
// declared failed. memberlist never retries a dead member by itself, so a
// server that restarts knowing only itself (or whose -retry-join targets
// are down) would stay cut off from the rest for good.
const reconnectEvery = 10 * time.Second

func (s *Server) reconnectFailed() {
	var addrs []string
	for _, m := range s.gossip.Members() {
		if m.Status == "failed" && m.Meta.Role == RoleServer {
			addrs = append(addrs, m.Addr)
		}
	}
	if len(addrs) == 0 && s.gossip.Alive() <= 1 {
		// Alone: try the configured join addresses again.
		addrs = s.cfg.RetryJoin
	}
	if len(addrs) == 0 {
		return
	}
	if n, err := s.gossip.Join(addrs); n > 0 {
		s.logger.Info("reconnected to gossip members", "contacted", n)
	} else if err != nil {
		s.logger.Debug("reconnecting to failed gossip members", "addresses", addrs, "error", err)
	}
}

// maybeBootstrap forms the cluster when bootstrap_expect servers are alive
// in the pool and none of them belongs to a formed cluster yet. Every one
// of them proposes the same configuration, so it does not matter who is
// first.
func (s *Server) maybeBootstrap() {
	var servers []raft.Server
	for _, m := range s.gossip.Members() {
		if m.Meta.Role != RoleServer || m.Status != "alive" {
			continue
		}
		if m.Meta.Bootstrapped {
			// A formed cluster exists: its leader will add us.
			s.hadState = true
			return
		}
		if m.Meta.BootstrapExpect != 0 && m.Meta.BootstrapExpect != s.cfg.BootstrapExpect {
			s.logger.Error("servers disagree on bootstrap_expect; not bootstrapping", "peer", m.Name, "peer_expect", m.Meta.BootstrapExpect, "ours", s.cfg.BootstrapExpect)
			return
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Meta.Raft), Suffrage: raft.Voter})
	}
	if len(servers) < s.cfg.BootstrapExpect {
		return
	}
	sort.Slice(servers, func(a, b int) bool { return servers[a].ID < servers[b].ID })
	servers = servers[:s.cfg.BootstrapExpect]
	s.logger.Info("bootstrapping the cluster", "servers", fmt.Sprint(servers))
	if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && err != raft.ErrCantBootstrap {
		s.logger.Error("bootstrap failed", "error", err)
		return
	}
	s.hadState = true
}

// reconcileLoop keeps Raft's voters in line with the servers in the gossip
// pool: at once when leadership is established (members may have come or
// gone during the election), then whenever watchMembership wakes it. It is
// leader work: it runs from establishLeadership until ctx ends with
// revokeLeadership.
func (s *Server) reconcileLoop(ctx context.Context) {
	if s.gossip == nil {
		return // -dev: a single server has no members to reconcile
	}
	for {
		s.reconcileMembers()
		select {
		case <-ctx.Done():
			return
		case <-s.reconcileCh:
		}
	}
}

// reconcileMembers adds alive servers missing from the Raft configuration
// and removes servers that left the pool on purpose. Failed servers stay
// voters: they may come back, and an operator removes them with
// `outpost operator raft remove-peer`.
func (s *Server) reconcileMembers() {
	fut := s.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		s.logger.Warn("reading raft configuration", "error", err)
		return
	}
	inRaft := map[raft.ServerID]raft.ServerAddress{}
	for _, srv := range fut.Configuration().Servers {
		inRaft[srv.ID] = srv.Address
	}
	for _, m := range s.gossip.Members() {
		if m.Meta.Role != RoleServer || m.Name == s.cfg.NodeID {
			continue
		}
		id := raft.ServerID(m.Name)
		addr, present := inRaft[id]
		switch {
		case m.Status == "alive" && !m.Meta.Leaving && (!present || addr != raft.ServerAddress(m.Meta.Raft)):
			s.logger.Info("adding server to raft", "server", m.Name, "addr", m.Meta.Raft)
			if err := s.raft.AddVoter(id, raft.ServerAddress(m.Meta.Raft), 0, 10*time.Second).Error(); err != nil {
				s.logger.Warn("adding server to raft failed", "server", m.Name, "error", err)
			}
		case m.Status == "left" && present:
			s.logger.Info("removing server that left", "server", m.Name)
			if err := s.raft.RemoveServer(id, 0, 10*time.Second).Error(); err != nil {
				s.logger.Warn("removing server failed", "server", m.Name, "error", err)
			}
		}
	}
}

// Leave takes this server out of the cluster on purpose: a leader hands
// leadership to another voter first, then the server leaves gossip, which
// makes the leader remove it from Raft. It waits (bounded) for that.
func (s *Server) Leave(ctx context.Context) {
	if s.gossip == nil {
		return
	}
	voters := 0
	if fut := s.raft.GetConfiguration(); fut.Error() == nil {
		for _, srv := range fut.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				voters++
			}
		}
	}
	if voters > 1 && s.raft.State() == raft.Leader {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.logger.Warn("handing over leadership failed", "error", err)
		} else {
			s.logger.Info("handed over leadership")
		}
	}
	if voters > 1 {
		// Ask the leader to remove this server rather than count on it
		// reading the leave from gossip: should the Leaving announcement
		// reach it after memberlist's leave message, it would take the
		// leave for a failure and keep this server as a voter.
		s.gossip.AnnounceLeaving(5 * time.Second)
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.RemovePeer(rctx, s.cfg.NodeID); err != nil {
			s.logger.Warn("asking the leader to remove this server failed; leaving gossip, from which the leader learns it", "error", err)
		}
		cancel()
	}
	if err := s.gossip.Leave(5 * time.Second); err != nil {
		s.logger.Warn("leaving gossip", "error", err)
	}
	if voters <= 1 {
		return
	}
	// Wait until the leader has removed us, so the remaining servers'
	// quorum no longer counts this one.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		fut := s.raft.GetConfiguration()
		if fut.Error() != nil {
			return
		}
		in := false
		for _, srv := range fut.Configuration().Servers {
			if srv.ID == raft.ServerID(s.cfg.NodeID) {
				in = true
			}
		}
		if !in {
			s.logger.Info("left the raft cluster")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.logger.Warn("the leader did not remove this server in time; it stays a voter until removed with `outpost operator raft remove-peer`")
}
