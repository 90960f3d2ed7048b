package testcluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// DefaultReadyTimeout bounds how long StartServer and Restart wait for a
// server to answer with a known leader. A healthy one needs a second or two;
// the rest is headroom for a loaded machine.
const DefaultReadyTimeout = 20 * time.Second

// startAttempts is how often StartServer tries fresh ports when another
// process took one of its ports between FreePort and the bind.
const startAttempts = 3

var serverSeq atomic.Int64

// ServerOptions describes one outpost server agent.
type ServerOptions struct {
	// Name is the node name (-name), also its Raft id; default "server-N".
	Name string
	// Dev runs `agent -dev`: in memory, with an in-process runner always.
	// DataDir, Runner, BootstrapExpect and the cluster fields are ignored.
	Dev bool
	// Runner adds an in-process runner to a real server (-runner).
	Runner bool
	// Labels are the in-process runner's labels (-label k=v).
	Labels map[string]string
	// Capacity is the in-process runner's capacity (-runner-capacity);
	// zero keeps the agent's default.
	Capacity int
	// DataDir is the server's -data-dir; empty means a fresh temporary one.
	// Pass a used one to start a server on existing state.
	DataDir string
	// HTTPPort and RaftPort are the ports to listen on; zero picks free ones.
	HTTPPort, RaftPort int
	// GossipPort is the gossip port (TCP and UDP) of a real server; zero
	// picks a free one. A -dev agent does not gossip.
	GossipPort int
	// RaftMultiplier, when set, is passed as -raft-multiplier (1 is the
	// fastest failure detection); zero keeps the agent's default.
	RaftMultiplier int
	// BootstrapExpect is -bootstrap-expect; zero means 1.
	BootstrapExpect int
	// RetryJoin addresses are passed as -retry-join, one flag each.
	RetryJoin []string
	// LogLevel is -log-level; default "debug", so a failed test's log dump
	// shows what the agent decided and why.
	LogLevel string
	// ExtraArgs are appended to the generated arguments.
	ExtraArgs []string
	// Env is added to the agent's environment (see ProcessOptions.Env).
	Env []string
	// ReadyTimeout bounds the wait for a leader; DefaultReadyTimeout if 0.
	ReadyTimeout time.Duration
	// StopTimeout bounds Stop's wait after SIGTERM; DefaultStopTimeout if 0.
	StopTimeout time.Duration
	// Host is the address a real server listens on and is reached at: it
	// is passed as -bind and, when set, as -advertise, and Addr uses it.
	// Empty means 127.0.0.1, the loopback every test uses by default; a
	// host in a network namespace of its own (see Prefix) needs that
	// namespace's address.
	Host string
	// Prefix is put before the agent's command line (see
	// ProcessOptions.Prefix), e.g. `ip netns exec NS` to run the server in
	// a network namespace.
	Prefix []string
	// ACLToken is the management token of the cluster a real server joins
	// (Cluster.Token); empty, StartServer bootstraps ACLs itself and keeps
	// the token. -dev agents run without ACLs.
	ACLToken string
	// InsecureNoTLS runs a real server with -insecure-no-tls (benchmarks
	// compare it with TLS). A -dev agent never has TLS.
	InsecureNoTLS bool
	// TLS replaces the shared server certificate (ServerTLS) with other
	// files: a test that rotates one server's certificate needs its own.
	TLS *TLSFiles
	// GossipKey is a real server's -encrypt, which every agent outside
	// -dev needs; empty means GossipKey, shared by every agent a test
	// starts, and "none" passes no -encrypt at all.
	GossipKey string
}

// GossipKey is the gossip key (-encrypt) the harness gives every agent
// outside -dev unless told otherwise.
const GossipKey = "b3V0cG9zdC10ZXN0LWdvc3NpcC1rZXktMzItYnl0ZXM="

// encryptArg is the -encrypt flag for a GossipKey option.
func encryptArg(key string) []string {
	switch key {
	case "":
		return []string{"-encrypt=" + GossipKey}
	case "none":
		return nil
	}
	return []string{"-encrypt=" + key}
}

// tls reports whether the server's API is TLS.
func (o ServerOptions) tls() bool { return !o.Dev && !o.InsecureNoTLS }

// Server is an outpost server agent started by a test. It embeds its
// Process, so Kill, Stop, Freeze, Thaw, Logs and the rest apply to it;
// Restart additionally waits until the server is ready again.
type Server struct {
	*Process
	opts   ServerOptions
	client *rpc.Client
	// token is the ACL management token Client and Env send.
	token string
}

// StartServer starts a server agent and waits until it answers Status with
// a known leader. It fails the test if the server is not ready within
// opts.ReadyTimeout. A server alone (-dev, or -bootstrap-expect=1) elects
// itself; for servers that must find each other use StartCluster.
func StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		s := launchServer(t, opts)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ReadyTimeout)
		err := s.WaitReady(ctx)
		if err == nil && !opts.Dev {
			err = s.bootstrapACL(ctx, opts.ACLToken)
		}
		cancel()
		if err == nil {
			return s
		}
		// FreePort cannot reserve a port: another process may bind it
		// first. Then the agent exits at once, and fresh ports (and, as the
		// old ones may be recorded in it, a fresh data dir) fix it.
		clash := s.Exited() && strings.Contains(s.Logs(), "address already in use")
		reservable := opts.HTTPPort == 0 && opts.RaftPort == 0 && opts.GossipPort == 0 && opts.DataDir == ""
		if clash && reservable && attempt < startAttempts {
			t.Logf("testcluster: %s lost a port race (%v); retrying on new ports", s.Name(), err)
			continue
		}
		t.Fatalf("testcluster: server %s at %s not ready within %v: %v", s.Name(), s.Addr(), s.opts.ReadyTimeout, err)
	}
}

// launchServer fills in opts and starts the agent without waiting for it.
func launchServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("server-%d", serverSeq.Add(1))
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = FreePort(t)
	}
	if opts.RaftPort == 0 {
		opts.RaftPort = FreePort(t)
	}
	// Every real server gossips, on 7702 unless told otherwise; two tests'
	// servers must not both take the default.
	if !opts.Dev && opts.GossipPort == 0 {
		opts.GossipPort = FreePort(t)
	}
	if opts.BootstrapExpect == 0 {
		opts.BootstrapExpect = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if !opts.Dev && opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.tls() && opts.TLS == nil {
		f := ServerTLS(t)
		opts.TLS = &f
	}
	s := &Server{opts: opts}
	s.setToken(t, opts.ACLToken)
	s.Process = StartProcess(t, ProcessOptions{
		Name:        opts.Name,
		Args:        serverArgs(opts),
		Env:         opts.Env,
		DataDir:     opts.DataDir,
		StopTimeout: opts.StopTimeout,
		Prefix:      opts.Prefix,
	})
	return s
}

// serverArgs turns options into agent flags.
func serverArgs(o ServerOptions) []string {
	args := []string{"agent"}
	if o.Dev {
		args = append(args, "-dev")
	} else {
		args = append(args,
			"-server",
			"-bootstrap-expect="+strconv.Itoa(o.BootstrapExpect),
			"-data-dir="+o.DataDir,
			"-bind="+o.host(),
		)
		// Only when asked for, so a default command line stays as it was;
		// the agent advertises its bind address anyway.
		if o.Host != "" {
			args = append(args, "-advertise="+o.Host)
		}
		if o.Runner {
			args = append(args, "-runner")
		}
		if o.GossipPort > 0 {
			args = append(args, "-gossip-port="+strconv.Itoa(o.GossipPort))
		}
		if o.RaftMultiplier > 0 {
			args = append(args, "-raft-multiplier="+strconv.Itoa(o.RaftMultiplier))
		}
		for _, j := range o.RetryJoin {
			args = append(args, "-retry-join="+j)
		}
		if o.InsecureNoTLS {
			args = append(args, "-insecure-no-tls")
		} else if o.TLS != nil {
			args = append(args, o.TLS.Args()...)
		}
		args = append(args, encryptArg(o.GossipKey)...)
	}
	args = append(args,
		"-name="+o.Name,
		"-http-port="+strconv.Itoa(o.HTTPPort),
		"-raft-port="+strconv.Itoa(o.RaftPort),
		"-log-level="+o.LogLevel,
	)
	// Sorted, so the command line (and a log that shows it) is stable.
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		args = append(args, "-label="+k+"="+o.Labels[k])
	}
	if o.Capacity > 0 {
		args = append(args, "-runner-capacity="+strconv.Itoa(o.Capacity))
	}
	return append(args, o.ExtraArgs...)
}

// host is the address the server binds and is reached at.
func (o ServerOptions) host() string {
	if o.Host == "" {
		return "127.0.0.1"
	}
	return o.Host
}

// Addr returns the server's API address, "https://HOST:PORT" ("http://"
// for -dev and InsecureNoTLS; HOST is 127.0.0.1 unless
// ServerOptions.Host says otherwise).
func (s *Server) Addr() string {
	scheme := "https://"
	if !s.opts.tls() {
		scheme = "http://"
	}
	return scheme + net.JoinHostPort(s.opts.host(), strconv.Itoa(s.opts.HTTPPort))
}

// Host returns the address the server listens on.
func (s *Server) Host() string { return s.opts.host() }

// GossipAddr returns the server's gossip address, HOST:PORT.
func (s *Server) GossipAddr() string {
	return net.JoinHostPort(s.opts.host(), strconv.Itoa(s.opts.GossipPort))
}

// HTTPPort returns the API port.
func (s *Server) HTTPPort() int { return s.opts.HTTPPort }

// RaftPort returns the Raft port.
func (s *Server) RaftPort() int { return s.opts.RaftPort }

// GossipPort returns the gossip port, 0 when none was given.
func (s *Server) GossipPort() int { return s.opts.GossipPort }

// Options returns the options the server was started with, defaults filled.
func (s *Server) Options() ServerOptions { return s.opts }

// Client returns a typed API client for this server, which sends the
// cluster's ACL management token.
func (s *Server) Client() *rpc.Client { return s.client }

// Token returns the ACL management token Client and Env use ("" for a
// -dev agent).
func (s *Server) Token() string { return s.token }

// setToken makes the client send token from now on.
func (s *Server) setToken(t testing.TB, token string) {
	var tc *tls.Config
	if s.opts.tls() {
		tc = ClientTLSConfig(t)
	}
	client, err := rpc.NewClientTLS(s.Addr(), nil, tc, rpc.WithToken(token))
	if err != nil {
		t.Fatalf("testcluster: client for %s: %v", s.Addr(), err)
	}
	s.client, s.token = client, token
}

// bootstrapACL makes the cluster's management token through this server
// (acl bootstrap), unless the caller has one (token, of the cluster it
// joins), and keeps it.
func (s *Server) bootstrapACL(ctx context.Context, token string) error {
	if token != "" {
		return nil
	}
	secret, err := bootstrapVia(ctx, s.client)
	if err != nil {
		return fmt.Errorf("%s: acl bootstrap: %w (a server joining a cluster needs ServerOptions.ACLToken)", s.Name(), err)
	}
	s.setToken(s.t, secret)
	return nil
}

// bootstrapVia runs the ACL bootstrap through c, retrying while the
// cluster has no leader to take it.
func bootstrapVia(ctx context.Context, c *rpc.Client) (string, error) {
	var secret string
	err := poll(ctx, func() (bool, string, error) {
		resp, err := c.ACL.Bootstrap(ctx, connect.NewRequest(&pb.ACLBootstrapRequest{}))
		switch {
		case connect.CodeOf(err) == connect.CodeUnavailable:
			return false, err.Error(), nil
		case err != nil:
			return false, "", err
		}
		secret = resp.Msg.Secret
		return true, "", nil
	})
	return secret, err
}

// Env returns the environment that points the CLI at this server: its
// address, under TLS the test CA and client certificate (ClientEnv), and
// the cluster's ACL management token.
func (s *Server) Env() []string {
	env := []string{"OUTPOST_ADDR=" + s.Addr()}
	if s.opts.tls() {
		env = append(env, ClientEnv(s.t)...)
	}
	if s.token != "" {
		env = append(env, "OUTPOST_TOKEN="+s.token)
	}
	return env
}

// CLI runs an outpost command against this server (see RunCLI). Problems
// running it are reported to the test that started the server; a subtest
// should call RunCLI with its own t and Env instead.
func (s *Server) CLI(args ...string) (stdout, stderr string, exitCode int) {
	s.t.Helper()
	return RunCLI(s.t, s.path, s.Env(), args...)
}

// Status asks the server for its status, giving up after a few seconds so a
// frozen server does not block the caller.
func (s *Server) Status(ctx context.Context) (*pb.StatusResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := s.client.Agent.Status(ctx, connect.NewRequest(&pb.StatusRequest{}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// WaitReady waits until the server answers Status naming a leader, or ctx
// ends. It returns early with an error when the process exits.
func (s *Server) WaitReady(ctx context.Context) error {
	return poll(ctx, func() (bool, string, error) {
		if s.Exited() {
			return false, "", fmt.Errorf("%s exited (%s) before it was ready; log tail:\n%s", s.Name(), s.ExitState(), s.Tail(20))
		}
		st, err := s.Status(ctx)
		switch {
		case err != nil:
			return false, fmt.Sprintf("%s: Status: %v", s.Name(), err), nil
		case st.Leader == "":
			return false, fmt.Sprintf("%s answers but knows no leader (applied index %d)", s.Name(), st.LastIndex), nil
		}
		return true, "", nil
	})
}

// Restart starts the server again on the same ports, data directory and
// arguments, once it has exited, and waits until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	s.Process.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ReadyTimeout)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		s.t.Fatalf("testcluster: %s not ready within %v of its restart: %v", s.Name(), s.opts.ReadyTimeout, err)
	}
}
