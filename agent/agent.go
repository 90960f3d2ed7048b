package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/audit"
	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
	"github.com/outpost-run/outpost/runner"
)

// Agent is one outpost process: a server, a runner, or both.
type Agent struct {
	cfg    *Config
	logger hclog.Logger

	server   *Server
	httpSrv  *http.Server
	httpAddr string
	runner   *runner.Runner
	// runnerTLS is a runner-only agent's certificates (a server agent's
	// are its server's).
	runnerTLS *tlsutil.Configurator

	runnerCancel context.CancelFunc
	runnerDone   chan struct{}

	cancelRequests context.CancelFunc

	// audit is the server's audit log, nil when it keeps none.
	audit *audit.Log

	gossipMu      sync.Mutex
	runnerGossip  *Gossip
	gossipJoining bool
	// gossipAddrs are the servers' gossip addresses last heard, to join
	// again once a new keyring lets this runner read the pool.
	gossipAddrs  []string
	shutdownOnce sync.Once
}

// New validates cfg and returns an agent; Start runs it.
func New(cfg *Config, logger hclog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, logger: logger}, nil
}

// HTTPAddr is the address the API listens on, once started.
func (a *Agent) HTTPAddr() string { return a.httpAddr }

// Server returns the agent's server, or nil for a runner-only agent.
func (a *Agent) Server() *Server { return a.server }

// Start starts the server and its listener, waits for a leader when the
// agent bootstraps alone, then starts the local runner.
func (a *Agent) Start(ctx context.Context) error {
	if a.cfg.Server {
		ln, err := a.listenHTTP()
		if err != nil {
			return err
		}
		srv, err := NewServer(a.cfg, a.advertisedHTTP(), a.logger)
		if err != nil {
			ln.Close()
			return err
		}
		a.server = srv
		if path := a.cfg.AuditFile(); path != "" {
			if a.audit, err = audit.Open(path, a.cfg.NodeID, a.logger); err != nil {
				ln.Close()
				_ = srv.Shutdown()
				return err
			}
		}
		a.serveHTTP(ln)
		if a.cfg.BootstrapExpect == 1 {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := srv.WaitForLeader(wctx)
			cancel()
			if err != nil {
				_ = a.Shutdown(context.Background())
				return err
			}
		}
	}
	if a.cfg.Runner {
		if err := a.startRunner(); err != nil {
			_ = a.Shutdown(context.Background())
			return err
		}
	}
	return nil
}

func (a *Agent) listenHTTP() (net.Listener, error) {
	bind := net.JoinHostPort(a.cfg.BindAddr, strconv.Itoa(a.cfg.Ports.HTTP))
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("agent: HTTP listener on %s: %w", bind, err)
	}
	a.httpAddr = ln.Addr().String()
	return ln, nil
}

// advertisedHTTP is the API address other servers use to reach this one.
func (a *Agent) advertisedHTTP() string {
	_, port, _ := net.SplitHostPort(a.httpAddr)
	return net.JoinHostPort(a.cfg.advertiseHost(), port)
}

// TLS is the agent's certificates, nil without TLS.
func (a *Agent) TLS() *tlsutil.Configurator {
	if a.server != nil {
		return a.server.tls
	}
	return a.runnerTLS
}

// ReloadTLS rereads the certificate files (SIGHUP): new connections use
// them, open ones keep theirs. Without TLS it does nothing.
func (a *Agent) ReloadTLS() error {
	if tc := a.TLS(); tc != nil {
		return tc.Reload()
	}
	return nil
}

// URL is the agent's API base URL, https:// under TLS.
func (a *Agent) URL() string {
	if a.TLS() != nil {
		return "https://" + a.httpAddr
	}
	return "http://" + a.httpAddr
}

func (a *Agent) serveHTTP(ln net.Listener) {
	mux := http.NewServeMux()
	var interceptors []connect.Interceptor
	if a.audit != nil {
		interceptors = append(interceptors, audit.Interceptor(a.audit))
	}
	guard := rpcserver.Register(mux, a.server, a.logger, interceptors...)
	mux.Handle("/v1/operator/snapshot", guard.HTTP(a.server.snapshotHandler()))
	if a.cfg.Dev || a.cfg.EnableDebug {
		// Profiles of a running agent, for finding bottlenecks: go tool
		// pprof http://ADDR/debug/pprof/profile. Operator write, as
		// snapshots: a heap profile shows what memory holds.
		debug := http.NewServeMux()
		registerDebugHandlers(debug)
		mux.Handle("/debug/pprof/", guard.HTTP(debug))
	}
	var handler http.Handler = mux
	if a.audit != nil {
		handler = audit.Middleware(a.audit, mux)
	}
	// HTTP/1.1 for curl and browsers, HTTP/2 for runners' bidirectional
	// streams: over TLS negotiated by ALPN, without it as h2c.
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	tc := a.server.tls
	if tc == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		// The role each client's certificate proves, for the role gates
		// of rpc/server and the ACL checks.
		handler = tlsutil.PeerRoleHandler(tc.Domain(), handler)
	}
	httpLog := a.logger.Named("http")
	// Every request's context derives from baseCtx, canceled first at
	// shutdown: long-lived streams (runners, log follows, blocking reads)
	// then end at once instead of holding Shutdown until its deadline.
	baseCtx, cancelBase := context.WithCancel(context.Background())
	a.cancelRequests = cancelBase
	a.httpSrv = &http.Server{
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		Handler:           handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		// TLS handshake errors become one WARN line that says why.
		ErrorLog: tlsutil.ServerErrorLog(httpLog),
	}
	serve := func() error { return a.httpSrv.Serve(ln) }
	if tc != nil {
		a.httpSrv.TLSConfig = tc.IncomingHTTP()
		plain := tlsutil.PlainHTTPListener(ln, httpLog)
		serve = func() error { return a.httpSrv.ServeTLS(plain, "", "") }
	}
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("HTTP server stopped", "error", err)
		}
	}()
	httpLog.Info("API listening", "address", a.URL(), "tls", tc != nil)
}

func (a *Agent) startRunner() error {
	rc := runner.Config{
		Name:     a.cfg.NodeID,
		Labels:   a.cfg.RunnerLabels,
		Capacity: a.cfg.RunnerCapacity,
		Servers:  a.cfg.RunnerServers,
		DataDir:  a.cfg.DataDir,
		Token:    a.cfg.RunnerToken,
		Version:  Version,
		Logger:   a.logger,
		Logs:     a.cfg.RunnerLogs,
	}
	if a.server != nil {
		// The runner inside a server agent talks to its own server, which
		// trusts it through a token that never leaves this process.
		rc.ID = a.cfg.NodeID + "-runner"
		rc.Servers = []string{a.URL()}
		rc.Token = a.server.LocalRunnerToken()
		rc.FixedServers = true
		if rc.DataDir != "" {
			rc.DataDir += "/runner"
		}
	} else {
		rc.OnRegistered = a.joinRunnerGossip
		rc.OnKeyring = a.applyRunnerKeyring
	}
	if len(rc.Servers) == 0 {
		return fmt.Errorf("agent: a runner needs at least one server address (-server)")
	}
	if err := a.runnerTLSClient(&rc); err != nil {
		return err
	}
	r, err := runner.New(rc)
	if err != nil {
		return err
	}
	a.runner = r
	if a.server == nil && a.cfg.Ports.Gossip >= 0 {
		g, err := StartGossip(GossipConfig{
			Name:      r.ID(),
			BindAddr:  a.cfg.BindAddr,
			Advertise: a.cfg.Advertise,
			Port:      a.cfg.Ports.Gossip,
			Key:       a.cfg.GossipKey,
			DataDir:   a.cfg.DataDir,
			Fast:      true,
			Logger:    a.logger,
			Meta:      NodeMeta{Role: RoleRunner, Capacity: a.cfg.RunnerCapacity, Labels: a.cfg.RunnerLabels, Version: Version},
		})
		if err != nil {
			// Gossip is an extra liveness signal; the stream alone works.
			a.logger.Warn("not joining gossip; liveness rests on the stream alone", "error", err)
		} else {
			a.gossipMu.Lock()
			a.runnerGossip = g
			a.gossipMu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.runnerCancel, a.runnerDone = cancel, make(chan struct{})
	go func() {
		defer close(a.runnerDone)
		_ = r.Run(ctx)
	}()
	return nil
}

// runnerTLSClient sets the runner's connection up for TLS: its
// certificate as the client certificate (the server's, for the runner
// inside a server agent), and https:// for addresses given without a
// scheme.
func (a *Agent) runnerTLSClient(rc *runner.Config) error {
	tc := a.TLS()
	if tc == nil && a.cfg.TLSEnabled() {
		var err error
		if tc, err = tlsutil.NewConfigurator(a.cfg.TLS); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.runnerTLS = tc
	}
	if tc == nil {
		return nil
	}
	rc.HTTPClient = rpc.NewTLSHTTPClient(tc.OutgoingRunner())
	rc.Servers = slices.Clone(rc.Servers)
	for i, s := range rc.Servers {
		if !strings.Contains(s, "://") {
			rc.Servers[i] = "https://" + s
		}
	}
	return nil
}

// joinRunnerGossip joins the pool through the servers' gossip addresses the
// first time a server tells them; a firewall that blocks gossip costs only
// the extra signal.
func (a *Agent) joinRunnerGossip(addrs []string) {
	a.gossipMu.Lock()
	g, joining := a.runnerGossip, a.gossipJoining
	a.gossipAddrs = addrs
	a.gossipMu.Unlock()
	// Join when alone in the pool: at first contact, and again after every
	// server went away (memberlist does not retry dead members).
	if g == nil || joining || g.Alive() > 1 {
		return
	}
	a.gossipMu.Lock()
	a.gossipJoining = true
	a.gossipMu.Unlock()
	go func() {
		if n, err := g.Join(addrs); err != nil && n == 0 {
			a.logger.Warn("cannot reach the servers' gossip; liveness rests on the stream alone", "addresses", addrs, "error", err)
		}
		a.gossipMu.Lock()
		a.gossipJoining = false
		a.gossipMu.Unlock()
	}()
}

// applyRunnerKeyring applies the keyring a server sent to the runner's
// gossip and keeps it in the data dir for the next start.
func (a *Agent) applyRunnerKeyring(keys []string, primary string) {
	a.gossipMu.Lock()
	g, addrs := a.runnerGossip, a.gossipAddrs
	a.gossipMu.Unlock()
	if g == nil || len(keys) == 0 {
		return
	}
	// Saved first: once the pool sees this runner hold the keys, a
	// restart must hold them too.
	if err := saveKeyring(a.cfg.DataDir, keys, primary); err != nil {
		a.logger.Error("cannot save the gossip keyring", "error", err)
		return
	}
	if err := g.SetKeyring(keys, primary); err != nil {
		a.logger.Error("cannot apply the cluster's gossip keyring", "error", err)
		return
	}
	a.logger.Named("gossip").Info("gossip keyring applied", "keys", len(keys), "primary", KeyFingerprint(primary))
	// A runner that started with a key rotated out could not join; now
	// it can.
	if len(addrs) > 0 {
		a.joinRunnerGossip(addrs)
	}
}

// Halted delivers why the server stopped applying the log (see
// Server.Halted); it never delivers for an agent without a server.
func (a *Agent) Halted() <-chan error {
	if a.server == nil {
		return nil
	}
	return a.server.Halted()
}

// Runner returns the agent's runner, or nil.
func (a *Agent) Runner() *runner.Runner { return a.runner }

// Leave takes a server out of the cluster on purpose (graceful stop).
func (a *Agent) Leave(ctx context.Context) {
	if a.server != nil {
		a.server.Leave(ctx)
	}
}

// SetLogLevel changes the level of every logger of the agent.
func (a *Agent) SetLogLevel(level hclog.Level) { a.logger.SetLevel(level) }

// Shutdown stops the runner (canceling its jobs), the API and the server.
func (a *Agent) Shutdown(ctx context.Context) error {
	var err error
	a.shutdownOnce.Do(func() {
		if a.runnerCancel != nil {
			a.runnerCancel()
			select {
			case <-a.runnerDone:
			case <-ctx.Done():
			}
		}
		a.gossipMu.Lock()
		if a.runnerGossip != nil {
			_ = a.runnerGossip.Leave(2 * time.Second)
		}
		a.gossipMu.Unlock()
		if a.httpSrv != nil {
			a.cancelRequests()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if e := a.httpSrv.Shutdown(sctx); e != nil {
				_ = a.httpSrv.Close()
			}
			cancel()
		}
		if a.server != nil {
			err = a.server.Shutdown()
		}
		_ = a.audit.Close()
	})
	return err
}

// ReopenAudit reopens the audit log file (SIGHUP, after logrotate moved
// it).
func (a *Agent) ReopenAudit() error {
	if a.audit == nil {
		return nil
	}
	return a.audit.Reopen()
}
