package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// In-process test servers, for this package's tests and any other's: real
// servers in the test's process, built from a Config by the server's own
// constructor, each with its own data directory (Raft on raft-boltdb, as
// in production), the HTTP API, Raft and gossip on free loopback ports,
// and Raft's timeouts cut to tens of milliseconds, so a cluster forms and
// fails over well within a second. They fill the gap between unit tests
// of one type and the multi-process tests of internal/e2e: liveness,
// forwarding and leadership can be tested against real Raft in a second.
//
// Everything a test starts here is shut down when the test ends, and the
// servers' logs are printed if it failed.

// testRaftTimeout is every Raft timeout of a test server: heartbeat,
// election and leader lease. Shorter ones make a server that the race
// detector or a loaded machine slows down lose leadership now and then.
const testRaftTimeout = 50 * time.Millisecond

// testWait bounds the waits for a cluster to form or elect. It only bounds
// how long a broken build takes to fail: a healthy one takes well under a
// second.
const testWait = 30 * time.Second

// TestGossipKey is the gossip key of test agents (32 bytes, base64).
const TestGossipKey = "b3V0cG9zdC10ZXN0LWdvc3NpcC1rZXktMzItYnl0ZXM="

// TestConfig returns the configuration TestServer and TestCluster start a
// server named name with, before the caller's adjustments: a server on
// 127.0.0.1 with every port free (0), data in a fresh t.TempDir() and Raft
// timeouts of testRaftTimeout. BootstrapExpect is 1.
func TestConfig(t testing.TB, name string) *Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = name
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = "127.0.0.1"
	cfg.Server = true
	cfg.BootstrapExpect = 1
	cfg.GossipKey = TestGossipKey
	cfg.Ports = Ports{}
	cfg.RaftTiming = RaftTiming{
		HeartbeatTimeout:   testRaftTimeout,
		ElectionTimeout:    testRaftTimeout,
		LeaderLeaseTimeout: testRaftTimeout,
	}
	cfg.TLS = testServerTLS(t)
	return cfg
}

// The in-process servers run with TLS, as production servers must: one
// CA and one server certificate per test binary, made with
// internal/tlsutil into a directory of their own (a test's TempDir would
// go with that test).
var (
	testTLSOnce sync.Once
	testTLSCfg  tlsutil.Config
	testTLSErr  error
)

// TestHTTPClient is an HTTP client for the test servers' API: it trusts
// the test CA and presents the test server certificate, so it may call
// the internal API too.
func TestHTTPClient(t testing.TB) *http.Client {
	t.Helper()
	tc, err := tlsutil.NewConfigurator(testServerTLS(t))
	if err != nil {
		t.Fatalf("agent: test certificates: %v", err)
	}
	return rpc.NewTLSHTTPClient(tc.OutgoingServer())
}

func testServerTLS(t testing.TB) tlsutil.Config {
	t.Helper()
	testTLSOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-agent-test-pki-")
		if err != nil {
			testTLSErr = err
			return
		}
		pki, err := tlsutil.NewPKI(dir, tlsutil.DefaultDomain)
		if err != nil {
			testTLSErr = err
			return
		}
		cert, key, err := pki.Issue(tlsutil.RoleServer, "server", tlsutil.IssueOptions{})
		if err != nil {
			testTLSErr = err
			return
		}
		testTLSCfg = pki.Config(cert, key)
	})
	if testTLSErr != nil {
		t.Fatalf("agent: test certificates: %v", testTLSErr)
	}
	return testTLSCfg
}

// TestServer starts a server that bootstraps a cluster of its own and
// waits until it leads, with leadership established. adjust, if not nil,
// changes its configuration (from TestConfig) first. Only the server and
// its API run: a runner the configuration asks for is not started.
func TestServer(t testing.TB, adjust func(*Config)) *Agent {
	t.Helper()
	a := testServer(t, adjust, nil)
	WaitForLeader(t, a)
	return a
}

// TestCluster starts n servers, named s1 to sn, that find each other by
// gossip (each joins s1) and bootstrap together (bootstrap_expect n), and
// waits until they agree on a leader that has established leadership and
// whose API address every server knows. adjust, if not nil, changes each
// one's configuration first; cfg.NodeID tells them apart.
func TestCluster(t testing.TB, n int, adjust func(*Config)) []*Agent {
	t.Helper()
	agents := testCluster(t, n, adjust, nil)
	WaitForLeader(t, agents...)
	return agents
}

// testServer is TestServer with a hook that adjusts the server before it
// runs, for this package's tests to inject faults (a failing barrier). It
// does not wait for leadership, which such a fault may hold up.
func testServer(t testing.TB, adjust func(*Config), hook func(*Server)) *Agent {
	t.Helper()
	logs := newTestLogs(t)
	cfg := TestConfig(t, "s1")
	if adjust != nil {
		adjust(cfg)
	}
	return startTestAgent(t, cfg, logs, hook)
}

// testCluster is TestCluster with testServer's hook, run on every server,
// and like testServer it does not wait for a leader.
func testCluster(t testing.TB, n int, adjust func(*Config), hook func(*Server)) []*Agent {
	t.Helper()
	logs := newTestLogs(t)
	agents := make([]*Agent, n)
	for i := range agents {
		cfg := TestConfig(t, "s"+strconv.Itoa(i+1))
		cfg.BootstrapExpect = n
		if i > 0 {
			cfg.RetryJoin = []string{agents[0].GossipAddr()}
		}
		if adjust != nil {
			adjust(cfg)
		}
		agents[i] = startTestAgent(t, cfg, logs, hook)
	}
	return agents
}

// startTestAgent starts a server agent as Agent.Start does, with the hook
// run on the server before it starts, and shuts it down when the test
// ends. A port that another process took between the kernel handing it
// out and gossip binding UDP to it is retried on a fresh one.
func startTestAgent(t testing.TB, cfg *Config, logs *testLogs, hook func(*Server)) *Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a, err := New(cfg, logs.logger(cfg))
		if err != nil {
			t.Fatalf("agent: test server %s: %v", cfg.NodeID, err)
		}
		err = a.startTestServer(hook)
		if err == nil {
			t.Cleanup(func() { StopTestServer(t, a) })
			return a
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			t.Fatalf("agent: starting test server %s: %v", cfg.NodeID, err)
		}
		// A fresh data directory: the failed start may have bootstrapped
		// Raft with the address it could not keep.
		retry := *cfg
		retry.DataDir = t.TempDir()
		cfg = &retry
	}
}

// StopTestServer shuts a test server down, as a test's end does; a test
// calls it to take a server away. The API's open connections are closed
// after a short grace, rather than after the second that HTTP/2 gives
// clients to go away: other servers keep connections open to forward.
func StopTestServer(t testing.TB, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("agent: shutting down test server %s: %v", a.cfg.NodeID, err)
	}
}

// startTestServer is the server half of Start, with the hook.
func (a *Agent) startTestServer(hook func(*Server)) error {
	ln, err := a.listenHTTP()
	if err != nil {
		return err
	}
	srv, err := newServer(a.cfg, a.advertisedHTTP(), a.logger, hook)
	if err != nil {
		ln.Close()
		return err
	}
	a.server = srv
	a.serveHTTP(ln)
	return nil
}

// GossipAddr is the address the agent's server gossips on, for others to
// join; "" without gossip.
func (a *Agent) GossipAddr() string {
	if a.server == nil || a.server.gossip == nil {
		return ""
	}
	return net.JoinHostPort(a.cfg.advertiseHost(), strconv.Itoa(a.server.gossip.Port()))
}

// WaitForLeader waits until exactly one of servers leads, with leadership
// established (its dispatcher runs, it serves consistent reads), and every
// other one follows it and knows its API address, then returns it. Pass
// only running servers.
func WaitForLeader(t testing.TB, servers ...*Agent) *Agent {
	t.Helper()
	var leader *Agent
	testwait.For(t, testWait, func() (bool, error) {
		leader = nil
		for _, a := range servers {
			if s := a.server; s.IsLeader() && s.leaderReady.Load() {
				if leader != nil {
					return false, fmt.Errorf("both %s and %s lead", leader.cfg.NodeID, a.cfg.NodeID)
				}
				leader = a
			}
		}
		if leader == nil {
			return false, errors.New("no server has established leadership")
		}
		for _, a := range servers {
			s := a.server
			if got := s.leaderName(); got != leader.cfg.NodeID {
				return false, fmt.Errorf("%s follows %q, not %s", a.cfg.NodeID, got, leader.cfg.NodeID)
			}
			if s.httpAddrOf(leader.cfg.NodeID) == "" {
				return false, fmt.Errorf("%s does not know the API address of %s", a.cfg.NodeID, leader.cfg.NodeID)
			}
		}
		return true, nil
	})
	return leader
}

// testLogs collects the logs of a test's servers, to print if it fails:
// printing them as they come would bury the failure, and a goroutine that
// logs through the test after it ended panics.
type testLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// testLogsKeep bounds what testLogs keeps: the last of it, which is what
// explains a failure.
const testLogsKeep = 1 << 20

func newTestLogs(t testing.TB) *testLogs {
	l := &testLogs{}
	// Registered before any server starts, so it runs after they have all
	// shut down, and shows their last words too.
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Logf("server logs (the last %d KiB at most):\n%s", testLogsKeep>>10, l.buf.String())
		}
	})
	return l
}

func (l *testLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len()+len(p) > 2*testLogsKeep {
		tail := l.buf.Bytes()[l.buf.Len()-testLogsKeep:]
		l.buf = *bytes.NewBuffer(append([]byte(nil), tail...))
	}
	return l.buf.Write(p)
}

func (l *testLogs) logger(cfg *Config) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   cfg.NodeID,
		Level:  hclog.LevelFromString(cfg.LogLevel),
		Output: l,
	})
}

// BootstrapTestACL makes the management token of a test cluster through
// the leader's ACL bootstrap, as `outpost acl bootstrap` does, and
// returns its secret. Test servers run with ACLs on, as production does.
func BootstrapTestACL(t testing.TB, servers ...*Agent) string {
	t.Helper()
	leader := WaitForLeader(t, servers...)
	c, err := rpc.NewClient(leader.URL(), TestHTTPClient(t))
	if err != nil {
		t.Fatal(err)
	}
	var secret string
	testwait.For(t, testWait, func() (bool, error) {
		resp, err := c.ACL.Bootstrap(context.Background(), connect.NewRequest(&pb.ACLBootstrapRequest{}))
		if err != nil {
			// Unavailable (a leader still settling) is tried again;
			// anything else ends the wait.
			if connect.CodeOf(err) != connect.CodeUnavailable {
				return false, testwait.Abort(err)
			}
			return false, err
		}
		secret = resp.Msg.Secret
		return true, nil
	})
	return secret
}
