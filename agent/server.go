package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/outpost-run/outpost/agent/dispatch"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// applyTimeout bounds how long a write waits to be enqueued by Raft.
const applyTimeout = 10 * time.Second

// Server is one outpost server: a Raft replica of the state, plus the
// leader-only loops while it leads.
type Server struct {
	cfg    *Config
	logger hclog.Logger

	fsm       *fsm.FSM
	raft      *raft.Raft
	transport raft.Transport
	closers   []func() error
	raftAddr  string

	// tls is nil without TLS (-dev, -insecure-no-tls).
	tls      *tlsutil.Configurator
	liveness *Liveness
	gossip   *Gossip // nil in -dev: a single server has no one to gossip with
	peers    *peers
	// httpAddr is this server's advertised API address, for forwarding.
	httpAddr string
	// localRunnerToken adopts the runner inside this agent; it lives only
	// in this process's memory.
	localRunnerToken string

	// submits groups concurrent submits into shared log entries.
	submits *submitBatcher
	// leases confirms runners' heartbeats through the leader.
	leases *leaseConfirmer
	// barrier shares read barriers among submits (RecentBarrier).
	barrier recentBarrier
	// serverAddrs are every server's API address, refreshed with the
	// membership loop, for runners to move to ([]string).
	serverAddrs atomic.Value

	// leaderReady is set once a new leader has applied every entry of
	// earlier terms (establishLeadership's barrier).
	leaderReady atomic.Bool

	// gcMu makes garbage-collection passes (the leader's loop, a forced
	// one) take turns.
	gcMu sync.Mutex

	// The leader's work (leader.go): started together once leadership is
	// established, stopped together when it is revoked.
	leaderMu     sync.Mutex
	leaderCancel context.CancelFunc
	leaderDone   chan struct{}
	dispatcher   *dispatch.Dispatcher
	// raftBarrier, when set (by tests only), replaces Raft's barrier in
	// establishLeadership, to make a new leader fail to catch up.
	raftBarrier func(timeout time.Duration) error
	// reconcileCh wakes the leader's member reconciliation when gossip
	// membership changes.
	reconcileCh chan struct{}

	raftNotifyCh chan bool
	logCount     *countingLogStore
	// logFull is told when the Raft log holds more bytes than its bounds.
	logFull chan struct{}
	// dispatchStats accumulate over every leadership of this server.
	dispatchStats dispatch.Stats
	// hadState is true when Raft found a log or snapshot at start: such a
	// server never bootstraps again.
	hadState   bool
	shutdownCh chan struct{}
	wg         sync.WaitGroup

	// halted receives, once, why the FSM stopped applying the log.
	halted chan error
}

// NewServer opens the server's stores, starts Raft and joins gossip.
// httpAddr is the API address other servers forward writes to.
func NewServer(cfg *Config, httpAddr string, logger hclog.Logger) (*Server, error) {
	return newServer(cfg, httpAddr, logger, nil)
}

// newServer is NewServer with a hook that adjusts the server before
// anything in it runs: tests inject faults through it (agent/testing.go).
func newServer(cfg *Config, httpAddr string, logger hclog.Logger, adjust func(*Server)) (*Server, error) {
	var tc *tlsutil.Configurator
	if cfg.TLSEnabled() {
		var err error
		if tc, err = tlsutil.NewConfigurator(cfg.TLS); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	s := &Server{
		cfg:              cfg,
		logger:           logger.Named("server"),
		halted:           make(chan error, 1),
		tls:              tc,
		liveness:         NewLiveness(cfg.RunnerTimeout),
		peers:            newPeers(tc),
		localRunnerToken: rpc.NewSecret("local_"),
		httpAddr:         httpAddr,
		shutdownCh:       make(chan struct{}),
		// Buffered so Raft never blocks on us; leadership flaps are rare.
		raftNotifyCh: make(chan bool, 16),
		reconcileCh:  make(chan struct{}, 1),
	}
	if adjust != nil {
		adjust(s)
	}
	f, err := fsm.NewWithConfig(fsm.Config{Logger: logger, Halt: s.halt})
	if err != nil {
		return nil, err
	}
	s.fsm = f
	// Before gossip starts: its loop refreshes the list.
	s.serverAddrs.Store([]string{s.PeerURL(httpAddr)})
	if err := s.setupRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	if !cfg.Dev {
		if err := s.setupGossip(); err != nil {
			_ = s.raft.Shutdown().Error()
			s.closeStores()
			return nil, err
		}
	}
	if !cfg.ACLEnabled && !cfg.Dev {
		s.logger.Warn("ACLs are DISABLED (acl { enabled = false }): anyone who can reach the HTTP API controls this cluster")
	}
	s.submits = newSubmitBatcher(s)
	s.leases = newLeaseConfirmer(s)
	s.wg.Add(3)
	go s.monitorLeadership()
	go s.snapshotByBytes(s.logFull)
	go func() {
		defer s.wg.Done()
		s.leases.run(s.shutdownCh)
	}()
	return s, nil
}

func (s *Server) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.Logger = s.logger.Named("raft")
	rc.LogLevel = s.cfg.LogLevel
	t := s.cfg.RaftTiming
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	// Until snapshotByBytes has seen entries: as many of the largest
	// (a full report batch) as fit in the trailing bytes.
	rc.TrailingLogs = min(s.cfg.TrailingLogs, max(minTrailingLogs, s.cfg.RaftTrailingBytes/(256<<10)))
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	rc.NotifyCh = s.raftNotifyCh
	return rc
}

func (s *Server) setupRaft() error {
	rc := s.raftConfig()
	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if s.cfg.DataDir == "" {
		// -dev: nothing on disk, by design.
		store := raft.NewInmemStore()
		s.logCount = &countingLogStore{LogStore: store}
		logs, stable, snaps = s.logCount, store, raft.NewInmemSnapshotStore()
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(s.cfg.NodeID))
		s.transport, s.raftAddr = trans, string(addr)
	} else {
		dir := filepath.Join(s.cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("server: create %s: %w", dir, err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
		if err != nil {
			return fmt.Errorf("server: open raft store: %w", err)
		}
		s.closers = append(s.closers, bolt.Close)
		s.logCount = &countingLogStore{LogStore: bolt}
		if err := s.logCount.load(); err != nil {
			return fmt.Errorf("server: %w", err)
		}
		// A log cache keeps recent entries in memory for followers that
		// lag a little, sparing the disk; bounded in bytes, as entries
		// may be large.
		logs, stable = newBoundedLogCache(s.logCount, 512, logCacheBytes), bolt
		fss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, s.logger.Named("snapshot"))
		if err != nil {
			return fmt.Errorf("server: open snapshot store: %w", err)
		}
		snaps = fss
		bind := net.JoinHostPort(s.cfg.BindAddr, strconv.Itoa(s.cfg.Ports.Raft))
		// Port 0 (in-process tests) listens on a free port, which is known
		// only once bound: the transport then advertises the address it
		// listens on, so the bind address must be a specific IP.
		var advertise net.Addr
		if s.cfg.Ports.Raft != 0 {
			addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(s.cfg.advertiseHost(), strconv.Itoa(s.cfg.Ports.Raft)))
			if err != nil {
				return fmt.Errorf("server: raft advertise address: %w", err)
			}
			advertise = addr
		}
		trans, err := s.raftTransport(bind, advertise)
		if err != nil {
			return fmt.Errorf("server: raft listener on %s: %w", bind, err)
		}
		s.closers = append(s.closers, trans.Close)
		s.transport, s.raftAddr = trans, string(trans.LocalAddr())
	}
	s.logFull = make(chan struct{}, 1)
	s.logCount.full, s.logCount.fullAt = s.logFull, s.cfg.RaftSnapshotBytes
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("server: read raft state: %w", err)
	}
	s.hadState = has
	if s.cfg.BootstrapExpect == 1 {
		if !has {
			boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(s.raftAddr)}}}
			if err := raft.BootstrapCluster(rc, logs, stable, snaps, s.transport, boot); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
				return fmt.Errorf("server: bootstrap raft: %w", err)
			}
		}
	}
	r, err := raft.NewRaft(rc, s.fsm, logs, stable, snaps, s.transport)
	if err != nil {
		return fmt.Errorf("server: start raft: %w", err)
	}
	s.raft = r
	return nil
}

// raftTransport is Raft's TCP transport, over TLS (tlsStreamLayer)
// unless TLS is off.
func (s *Server) raftTransport(bind string, advertise net.Addr) (*raft.NetworkTransport, error) {
	logger := s.logger.Named("raft-net")
	if s.tls == nil {
		return raft.NewTCPTransportWithLogger(bind, advertise, 3, 10*time.Second, logger)
	}
	layer, err := newTLSStreamLayer(bind, advertise, s.tls, logger)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: logger,
	}), nil
}

// TLS is the server's certificates, nil without TLS.
func (s *Server) TLS() *tlsutil.Configurator { return s.tls }

// logCacheBytes bounds the Raft entries a server keeps in memory besides
// the log on disk (512 entries at most).
const logCacheBytes = 8 << 20

func (s *Server) closeStores() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
}

// halt is the FSM's Halt hook: the log holds an entry this server cannot
// apply, so it must stop and be upgraded. The FSM has logged it. The hook
// runs on Raft's apply goroutine, where waiting for Raft would deadlock,
// so it only passes the news on; the agent shuts down.
func (s *Server) halt(err error) {
	select {
	case s.halted <- err:
	default:
	}
}

// Halted delivers why the FSM stopped applying the log: the server is
// older than the leader and must be shut down and upgraded.
func (s *Server) Halted() <-chan error { return s.halted }

// Shutdown stops leader work and Raft and closes the stores.
func (s *Server) Shutdown() error {
	if s.gossip != nil {
		_ = s.gossip.Shutdown()
	}
	close(s.shutdownCh)
	s.wg.Wait()
	s.revokeLeadership()
	var err error
	if s.raft != nil {
		err = s.raft.Shutdown().Error()
	}
	s.closeStores()
	return err
}

// State implements rpcserver.Backend.
func (s *Server) State() *state.Store { return s.fsm.State() }

// IsLeader reports whether this server leads right now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// leaderName returns the current leader's server name, "" during elections.
func (s *Server) leaderName() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// Status implements rpcserver.Backend.
func (s *Server) Status() *pb.StatusResponse {
	return &pb.StatusResponse{
		Name:                s.cfg.NodeID,
		Version:             Version,
		Dev:                 s.cfg.Dev,
		Leader:              s.leaderName(),
		IsLeader:            s.IsLeader(),
		LastIndex:           s.fsm.AppliedIndex(),
		LogStoreCalls:       s.logCount.calls.Load(),
		LogEntriesStored:    s.logCount.entries.Load(),
		DispatchPasses:      s.dispatchStats.Passes.Load(),
		DispatchAssigned:    s.dispatchStats.Assigned.Load(),
		DispatchDecideNanos: s.dispatchStats.DecideNanos.Load(),
		EntriesApplied:      s.fsm.AppliedByType(),
	}
}

// WaitForLeader blocks until the cluster has a leader.
func (s *Server) WaitForLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}
