package testcluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// DefaultRunnerStartTimeout bounds how long StartRunner and Runner.Restart
// wait for the runner's start banner. A healthy runner prints it at once;
// the rest is headroom for a loaded machine.
const DefaultRunnerStartTimeout = 20 * time.Second

var runnerSeq atomic.Int64

// RunnerOptions describes one `outpost runner agent`.
type RunnerOptions struct {
	// Name is the runner's display name (-name); default "runner-N".
	Name string
	// Path is the outpost binary to run; empty means Binary's. on_demand
	// jobs with limits re-exec the runner's binary as the job's user, so a
	// test of those needs a copy that user may execute.
	Path string
	// Servers are the API addresses (Server.Addr) the runner may connect
	// to, passed as one comma-separated -server flag. Required.
	Servers []string
	// Labels are passed as -label k=v, one flag each, sorted.
	Labels map[string]string
	// Capacity is -capacity; zero keeps the runner's default.
	Capacity int
	// Token is -token, an adoption token from `runner token create`.
	Token string
	// DataDir is -data-dir: identity, outbox, job directories. Empty means
	// a fresh temporary one; pass a used one to start on existing state.
	DataDir string
	// Gossip makes the runner join the gossip pool on a free port. Off by
	// default (-gossip-port=-1): the RPC stream is then its only liveness
	// signal, which keeps the failure detection a test sees simple.
	Gossip bool
	// LogLevel is -log-level; default "debug".
	LogLevel string
	// ExtraArgs are appended to the generated arguments.
	ExtraArgs []string
	// Env is added to the runner's environment (see ProcessOptions.Env).
	Env []string
	// StartTimeout bounds the wait for the start banner;
	// DefaultRunnerStartTimeout if 0.
	StartTimeout time.Duration
	// StopTimeout bounds Stop's wait after SIGTERM; DefaultStopTimeout if 0.
	StopTimeout time.Duration
	// Bind is the runner's -bind, the address it gossips from; empty means
	// 127.0.0.1. A runner in a network namespace of its own (see Prefix)
	// needs that namespace's address.
	Bind string
	// Prefix is put before the agent's command line (see
	// ProcessOptions.Prefix), e.g. `ip netns exec NS` to run the runner in
	// a network namespace.
	Prefix []string
	// InsecureNoTLS runs the runner with -insecure-no-tls; it is implied
	// when every server address is http:// (-dev servers).
	InsecureNoTLS bool
	// TLS replaces the shared runner certificate (RunnerTLS).
	TLS *TLSFiles
	// GossipKey is -encrypt (see ServerOptions.GossipKey).
	GossipKey string
}

// Runner is a runner agent started by a test. It embeds its Process, so
// Kill, Stop, Freeze, Thaw, Logs and the rest apply to it; Restart
// additionally waits for the start banner and checks the runner kept its
// identity.
type Runner struct {
	*Process
	opts RunnerOptions
	id   string
}

// bannerRE matches the line a runner prints once it has started.
var bannerRE = regexp.MustCompile(`==> outpost runner (r-[0-9A-Za-z_-]+) started`)

// gossipOffBug is what a runner that refuses -gossip-port=-1 says.
const gossipOffBug = "gossip port -1 is out of range"

// StartRunner starts a runner agent and waits until it prints its start
// banner, from which it learns the runner's id. The runner then connects
// to the servers on its own; use WaitListed to wait for a server to see it.
func StartRunner(t testing.TB, opts RunnerOptions) *Runner {
	t.Helper()
	if len(opts.Servers) == 0 {
		t.Fatalf("testcluster: StartRunner needs at least one server address")
	}
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("runner-%d", runnerSeq.Add(1))
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultRunnerStartTimeout
	}
	plain := true
	for _, a := range opts.Servers {
		plain = plain && strings.HasPrefix(a, "http://")
	}
	opts.InsecureNoTLS = opts.InsecureNoTLS || plain
	if !opts.InsecureNoTLS && opts.TLS == nil {
		f := RunnerTLS(t)
		opts.TLS = &f
	}
	gossipPort := -1
	if opts.Gossip {
		gossipPort = FreePort(t)
	}
	r := launchRunner(t, opts, gossipPort)
	err := r.waitBanner(1)
	if err != nil && !opts.Gossip && r.Exited() && strings.Contains(r.Logs(), gossipOffBug) {
		// `runner agent -help` documents -gossip-port=-1 as "do not join";
		// a build whose config check refuses it would fail every test that
		// uses a runner. TestRunnerWithoutGossip asserts the documented
		// behaviour; everything else goes on with a gossiping runner.
		t.Logf("testcluster: PRODUCT BUG: `outpost runner agent -gossip-port=-1` exits with %q although its help says -1 means do not join; starting %s with gossip on a free port instead", gossipOffBug, opts.Name)
		r = launchRunner(t, opts, FreePort(t))
		err = r.waitBanner(1)
	}
	if err != nil {
		t.Fatalf("testcluster: runner %s did not start within %v: %v", opts.Name, opts.StartTimeout, err)
	}
	return r
}

func launchRunner(t testing.TB, opts RunnerOptions, gossipPort int) *Runner {
	t.Helper()
	r := &Runner{opts: opts}
	r.Process = StartProcess(t, ProcessOptions{
		Name:        opts.Name,
		Path:        opts.Path,
		Args:        runnerArgs(opts, gossipPort),
		Env:         opts.Env,
		DataDir:     opts.DataDir,
		StopTimeout: opts.StopTimeout,
		Prefix:      opts.Prefix,
	})
	return r
}

// runnerArgs turns options into `runner agent` flags.
func runnerArgs(o RunnerOptions, gossipPort int) []string {
	bind := o.Bind
	if bind == "" {
		bind = "127.0.0.1"
	}
	args := []string{
		"runner", "agent",
		"-server=" + strings.Join(o.Servers, ","),
		"-name=" + o.Name,
		"-data-dir=" + o.DataDir,
		"-bind=" + bind,
		"-gossip-port=" + strconv.Itoa(gossipPort),
		"-log-level=" + o.LogLevel,
	}
	for _, k := range slices.Sorted(maps.Keys(o.Labels)) {
		args = append(args, "-label="+k+"="+o.Labels[k])
	}
	if o.Capacity > 0 {
		args = append(args, "-capacity="+strconv.Itoa(o.Capacity))
	}
	if o.Token != "" {
		args = append(args, "-token="+o.Token)
	}
	if o.InsecureNoTLS {
		args = append(args, "-insecure-no-tls")
	} else if o.TLS != nil {
		args = append(args, o.TLS.Args()...)
	}
	args = append(args, encryptArg(o.GossipKey)...)
	return append(args, o.ExtraArgs...)
}

// waitBanner waits until the log holds n start banners (one per start),
// and records the id the last one names.
func (r *Runner) waitBanner(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.StartTimeout)
	defer cancel()
	var failed error
	err := poll(ctx, func() (bool, string, error) {
		m := bannerRE.FindAllStringSubmatch(r.Logs(), -1)
		if len(m) >= n {
			id := m[len(m)-1][1]
			if r.id != "" && r.id != id {
				failed = fmt.Errorf("%s came back as runner %s, not %s, on the same data dir %s", r.Name(), id, r.id, r.opts.DataDir)
				return false, "", failed
			}
			// Written once, at the first start: a restart from another
			// goroutine (TryRestart) must not race readers of ID.
			if r.id == "" {
				r.id = id
			}
			return true, "", nil
		}
		if r.Exited() {
			failed = fmt.Errorf("%s exited (%s) before its start banner; log tail:\n%s", r.Name(), r.ExitState(), r.Tail(20))
			return false, "", failed
		}
		return false, "", nil
	})
	if err != nil && failed == nil {
		return fmt.Errorf("no start banner from %s; log tail:\n%s", r.Name(), r.Tail(20))
	}
	return err
}

// ID returns the runner's id, as its start banner gave it.
func (r *Runner) ID() string { return r.id }

// Options returns the options the runner was started with, defaults filled.
func (r *Runner) Options() RunnerOptions { return r.opts }

// Restart starts the runner again with the same arguments and data
// directory, once it has exited, and waits for its start banner. It fails
// the test if the runner does not start, or starts under another id.
func (r *Runner) Restart() {
	r.t.Helper()
	n := len(bannerRE.FindAllString(r.Logs(), -1))
	r.Process.Restart()
	if err := r.waitBanner(n + 1); err != nil {
		r.t.Fatalf("testcluster: restarting runner: %v", err)
	}
}

// TryRestart is Restart for callers off the test's goroutine (a fault
// injector): it returns what went wrong instead of failing the test.
func (r *Runner) TryRestart() error {
	n := len(bannerRE.FindAllString(r.Logs(), -1))
	if err := r.Process.TryRestart(); err != nil {
		return err
	}
	return r.waitBanner(n + 1)
}

// ListRunners reads the runners table the way a script would: `outpost
// runner list -json` against s.
func ListRunners(t testing.TB, s *Server) ([]*pb.Runner, error) {
	t.Helper()
	out, errOut, code := RunCLI(t, Binary(t), s.Env(), "runner", "list", "-json")
	if code != 0 {
		return nil, fmt.Errorf("outpost runner list -json exited %d: %s", code, strings.TrimSpace(errOut))
	}
	var resp pb.ListRunnersResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), &resp); err != nil {
		return nil, fmt.Errorf("outpost runner list -json printed no runner list (%v): %s", err, out)
	}
	return resp.Runners, nil
}

// errNotListed says a server does not know a runner (yet).
var errNotListed = errors.New("not listed")

// Listed returns the runner as `runner list -json` on s shows it.
func (r *Runner) Listed(s *Server) (*pb.Runner, error) {
	r.t.Helper()
	runners, err := ListRunners(r.t, s)
	if err != nil {
		return nil, err
	}
	for _, x := range runners {
		if x.Id == r.id {
			return x, nil
		}
	}
	return nil, fmt.Errorf("runner %s (%s) on %s: %w", r.id, r.Name(), s.Name(), errNotListed)
}

// WaitListed waits until `runner list -json` on s shows the runner with
// the given adoption status (pending, adopted, rejected) and liveness state
// (ready, down, or draining, which is ready with the drain flag set); an
// empty want matches anything. It returns the runner as last listed, and
// fails the test after timeout.
func (r *Runner) WaitListed(s *Server, status, state string, timeout time.Duration) *pb.Runner {
	r.t.Helper()
	var got *pb.Runner
	WaitFor(r.t, timeout, func() (bool, string) {
		if s.Exited() {
			r.t.Fatalf("testcluster: %s exited (%s) while runner %s was awaited", s.Name(), s.ExitState(), r.id)
		}
		x, err := r.Listed(s)
		if err != nil {
			return false, err.Error()
		}
		got = x
		if RunnerMatches(x, status, state) {
			return true, ""
		}
		return false, fmt.Sprintf("runner %s (%s) is listed as status %q, state %q, draining %v (reason %q); want status %q, state %q",
			x.Id, r.Name(), x.Status, x.State, x.Draining, x.StatusReason, status, state)
	})
	return got
}

// RunnerMatches reports whether x has the adoption status and liveness
// state asked for ("" matches anything; state "draining" means the drain
// flag is set, "ready" that the runner is up and not draining).
func RunnerMatches(x *pb.Runner, status, state string) bool {
	if status != "" && x.Status != status {
		return false
	}
	switch state {
	case "":
		return true
	case "draining":
		return x.Draining
	case rpc.RunnerReady:
		return x.State == rpc.RunnerReady && !x.Draining
	default:
		return x.State == state
	}
}
