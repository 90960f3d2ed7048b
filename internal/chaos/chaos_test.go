package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// TestMain runs the marker program instead of the tests when a chaos job
// started this binary (see marker.go).
func TestMain(m *testing.M) {
	if os.Getenv(MarkerEnv) != "" {
		os.Exit(MarkerMain())
	}
	if spec := os.Getenv(netHelperEnv); spec != "" {
		os.Exit(netHelper(spec))
	}
	testcluster.Main(m)
}

const (
	// runnerTimeout is the servers' runner_timeout. Short, so a run of two
	// minutes sees many lapses; the nemesis's freezes and cuts of 1-20 s
	// fall on both sides of it.
	runnerTimeout = 6 * time.Second
	// settleFor is how long after an execution ended its runner must have
	// been left alone for its result to be owed (check 6): a result can
	// wait for a reconnect (backoff up to 10 s) and a resend (3 s).
	settleFor = 2 * runnerTimeout
	// terminalWait bounds the wait for every acknowledged job to end once
	// the faults are healed. It only bounds how long a run with stuck jobs
	// takes to report them (check 8).
	terminalWait = 3 * time.Minute
	// defaultTime is the length of the run in `make test`.
	defaultTime = 2 * time.Minute
	// defaultRate is jobs submitted per second. Each works 0.1-3 s (1.55 s
	// on average) and a pool has 6 slots (two runners of capacity 3), so
	// a pool is under half busy without faults and work piles up, and
	// drains, while runners are out: sized for two shared cores.
	defaultRate = 2.0
	project     = "chaos"
)

// pools maps each job of the chaos project to the label pool it targets.
var pools = map[string]string{"a": "a", "b": "b"}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 servers and 4 runners for minutes; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux (processes, /proc, network namespaces)")
	}
	dur := defaultTime
	if v := os.Getenv("CHAOS_TIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_TIME=%q: want a duration such as 2m or 30m", v)
		}
		dur = d
	}
	seed := uint64(rand.Uint32())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: want a number", v)
		}
		seed = s
	}
	rate := defaultRate
	if v := os.Getenv("CHAOS_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("CHAOS_RATE=%q: want jobs per second, such as 2", v)
		}
		rate = r
	}
	// First, so a run that hangs or crashes can still be replayed.
	t.Logf("chaos: seed %d (replay with CHAOS_SEED=%d), %v of load at %.1f jobs/s and faults", seed, seed, dur, rate)

	rep := &Report{Seed: seed, Duration: dur, DurationText: dur.String(), RunnerTimeout: runnerTimeout.String(), StartedAt: time.Now().UTC(), Servers: 3, Runners: 4}
	rep.Plan = Plan(seed, dur, 4, true)
	rep.Code = codeUnderTest(t)

	// The hosts: a namespace each, or, where that cannot be done, the
	// loopback and no network faults (said loudly: a run without them
	// checks much less).
	serverHosts := []string{"s1", "s2", "s3"}
	runnerHosts := []string{"r1", "r2", "r3", "r4"}
	var nw *Network
	if err := NetworkSupport(); err != nil {
		rep.Network = "NONE: " + err.Error() + "; running on the loopback WITHOUT network faults"
	} else if nw, err = NewNetwork(append(append([]string(nil), serverHosts...), runnerHosts...)); err != nil {
		rep.Network = "NONE: making namespaces failed: " + err.Error() + "; running on the loopback WITHOUT network faults"
		nw = nil
	} else {
		// Registered before any process starts, so it runs after they
		// are all gone.
		t.Cleanup(nw.Close)
		rep.Network = nw.Describe()
		rep.NetworkOn = true
	}
	if nw == nil {
		t.Logf("chaos: !!!!!!!! %s !!!!!!!!", rep.Network)
		rep.Plan = Plan(seed, dur, 4, false)
	} else {
		t.Logf("chaos: network: %s", rep.Network)
	}

	cfg := filepath.Join(t.TempDir(), "server.hcl")
	cf := hclwrite.NewEmptyFile()
	cf.Body().AppendNewBlock("server", nil).Body().SetAttributeValue("runner_timeout", cty.StringVal(runnerTimeout.String()))
	if err := os.WriteFile(cfg, cf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c := testcluster.StartClusterEach(t, 3, testcluster.ServerOptions{
		Name:           "chaos",
		RaftMultiplier: 1,
		ExtraArgs:      []string{"-config=" + cfg},
		// Restarts and elections under load take longer on two busy cores.
		ReadyTimeout: 60 * time.Second,
	}, func(i int, o *testcluster.ServerOptions) {
		if nw != nil {
			h := nw.Host(serverHosts[i])
			o.Host, o.Prefix = h.IP, h.Prefix()
		}
	})
	leader := c.WaitForLeader(60 * time.Second)
	bin := testcluster.Binary(t)
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := testcluster.RunCLI(t, bin, leader.Env(), args...)
		if code != 0 {
			t.Fatalf("outpost %s exited %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	token, _, _ := strings.Cut(cli("runner", "token", "create", "-uses", "0", "-description", "chaos"), "\n")
	token = strings.TrimSpace(token)
	for _, pool := range slices.Sorted(maps.Values(pools)) {
		cli("runner", "profile", "set", "-name", "chaos-pool-"+pool, "-target-label", "pool="+pool)
	}

	runnerPool, runnerName := map[string]string{}, map[string]string{}
	var runners []*testcluster.Runner
	for i, hn := range runnerHosts {
		pool := "a"
		if i >= 2 {
			pool = "b"
		}
		opts := testcluster.RunnerOptions{
			Name:     "chaos-" + hn,
			Servers:  c.Addrs(),
			Labels:   map[string]string{"pool": pool},
			Capacity: 3,
			Token:    token,
			// Gossip as in production: liveness from the stream and the pool.
			Gossip: true,
			// Kept across restarts: identity and outbox survive a SIGKILL.
			DataDir: t.TempDir(),
		}
		if nw != nil {
			h := nw.Host(hn)
			opts.Bind, opts.Prefix = h.IP, h.Prefix()
		}
		r := testcluster.StartRunner(t, opts)
		runners = append(runners, r)
		runnerPool[r.ID()], runnerName[r.ID()] = pool, r.Name()
	}
	for _, r := range runners {
		r.WaitListed(leader, "adopted", "ready", 60*time.Second)
	}

	// Where the markers write: not a t.TempDir, whose parent only root may
	// enter; and kept when the run fails.
	markers, err := os.MkdirTemp("", "outpost-chaos-markers-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(markers, "locks"), 0o777); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src := projectSource(exe, markers)

	// One job per pool first: the project, the profiles and the marker
	// work before any fault.
	for _, job := range slices.Sorted(maps.Keys(pools)) {
		id := submitProbe(t, leader, src, job)
		testcluster.WaitFor(t, 60*time.Second, func() (bool, string) {
			j, err := getJob(leader, id, false)
			if err != nil {
				return false, err.Error()
			}
			if j.Status == rpc.JobSucceeded {
				return true, ""
			}
			if rpc.JobTerminal(j.Status) {
				t.Fatalf("probe job %s of pool %s ended %s (%s); the chaos jobs cannot run", id, job, j.Status, j.StatusReason)
			}
			return false, fmt.Sprintf("probe job %s is %s (%s)", id, j.Status, j.StatusReason)
		})
	}

	// The run.
	t0 := Mono()
	load := StartLoad(c.Servers, src, seed, LoadOptions{
		Rate: rate, Jobs: slices.Sorted(maps.Keys(pools)),
		MinWork: 100 * time.Millisecond, MaxWork: 3 * time.Second,
		AttemptTimeout: 8 * time.Second, RetryFor: 90 * time.Second, MaxInflight: 200,
	})
	t.Cleanup(load.Abort)
	env := Env{Cluster: c, Runners: runners, Net: nw, ServerHosts: serverHosts, RunnerHosts: runnerHosts}
	nem := StartNemesis(env, rep.Plan)
	t.Cleanup(nem.Stop)
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		time.Sleep(min(15*time.Second, time.Until(end)))
		t.Logf("chaos: %v of %v: %d acknowledged, %d faults started", (dur - time.Until(end)).Round(time.Second), dur, load.AckedCount(), len(nem.Faults()))
	}

	// Heal, and bring back anything down.
	nem.Stop()
	if nw != nil {
		if err := nw.HealAll(); err != nil {
			rep.Notes = append(rep.Notes, "healing the network: "+err.Error())
		}
	}
	for _, s := range c.Servers {
		if s.Exited() {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s was down after the nemesis stopped (%s); restarting it", s.Name(), s.ExitState()))
			if err := s.TryRestart(); err != nil {
				rep.Notes = append(rep.Notes, "restarting "+s.Name()+": "+err.Error())
			}
		}
	}
	for _, r := range runners {
		if r.Exited() {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s was down after the nemesis stopped (%s); restarting it", r.Name(), r.ExitState()))
			if err := r.TryRestart(); err != nil {
				rep.Notes = append(rep.Notes, "restarting "+r.Name()+": "+err.Error())
			}
		}
	}
	t.Logf("chaos: faults healed; waiting for the submits in flight")
	load.Stop()
	lr := load.Result()
	t.Logf("chaos: %d acknowledged of %d submitted; waiting up to %v for every one to end", len(lr.Acked), lr.Started, terminalWait)

	// Settle: a leader, every acknowledged job terminal, every server on
	// the same index, no execution still alive. Each wait is bounded and
	// none fails the test by itself: what did not settle is what the
	// checks report.
	ref, note := settle(c, lr, exe)
	rep.Notes = append(rep.Notes, note...)
	jobs, note := readAll(c)
	rep.Notes = append(rep.Notes, note...)

	execs, problems, err := ReadMarkers(markers)
	if err != nil {
		rep.Notes = append(rep.Notes, "reading markers: "+err.Error())
	}
	for _, p := range problems {
		rep.Notes = append(rep.Notes, "marker file: "+p)
	}
	for _, e := range execs {
		if strings.HasPrefix(e.Lock, "error") || e.Problems != "" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("marker %s of %s: lock %s %s", e.X, e.Job, e.Lock, e.Problems))
		}
	}
	logs := map[string]string{}
	for _, s := range c.Servers {
		logs[s.Name()] = s.Logs()
	}
	for _, r := range runners {
		logs[r.Name()] = r.Logs()
	}
	var names []string
	for _, s := range c.Servers {
		names = append(names, s.Name())
	}
	in := &Inputs{
		T0: t0, Settle: settleFor, Load: lr, Faults: nem.Faults(),
		Executions: execs, MarkerProblems: problems,
		Jobs: jobs, Servers: names, Reference: ref,
		RunnerName: runnerName, RunnerPool: runnerPool, JobPool: pools,
		Logs: logs, Network: nw != nil,
	}
	checks := RunChecks(in)
	rep.Notes = append(rep.Notes, nem.Notes()...)
	rep.Tally(in, checks)

	// The record: the JSON report in $CHAOS_OUT (make chaos: bench-results/)
	// if set; and on a failure (or with CHAOS_KEEP=1) a directory in $TMPDIR
	// with the report, the markers and every agent's whole log.
	stamp := time.Now().UTC().Format("20060102T150405Z")
	if rep.Violations > 0 || os.Getenv("CHAOS_KEEP") != "" {
		if dir, err := keep(stamp, seed, markers, logs); err != nil {
			rep.Notes = append(rep.Notes, "keeping logs: "+err.Error())
		} else {
			rep.Kept = dir
		}
	}
	var written []string
	if out := os.Getenv("CHAOS_OUT"); out != "" {
		_ = os.MkdirAll(out, 0o755)
		written = append(written, filepath.Join(out, fmt.Sprintf("chaos-%s-seed%d.json", stamp, seed)))
	}
	if rep.Kept != "" {
		written = append(written, filepath.Join(rep.Kept, "report.json"))
	}
	if len(written) == 0 {
		written = append(written, filepath.Join(t.TempDir(), "report.json"))
	}
	rep.Print(os.Stdout)
	for _, p := range written {
		if err := rep.Write(p); err != nil {
			t.Errorf("writing the report: %v", err)
		} else {
			t.Logf("chaos: report written to %s", p)
		}
	}
	os.RemoveAll(markers)
	if rep.Violations > 0 {
		t.Errorf("chaos: %d violations (%s); seed %d replays the faults: CHAOS_SEED=%d CHAOS_TIME=%s make chaos",
			rep.Violations, strings.Join(rep.failed(), ", "), seed, seed, dur)
	}
}

// projectSource is the chaos project: one job per pool, each retried up to
// three times, whose one step runs this test binary as the marker program
// for ${var.ms} milliseconds.
func projectSource(exe, markers string) []byte {
	f := hclwrite.NewEmptyFile()
	b := f.Body()
	b.SetAttributeValue("project", cty.StringVal(project))
	b.AppendNewBlock("variable", []string{"ms"}).Body().SetAttributeValue("default", cty.StringVal("500"))
	for _, job := range slices.Sorted(maps.Keys(pools)) {
		j := b.AppendNewBlock("job", []string{job}).Body()
		j.AppendNewBlock("runner", nil).Body().SetAttributeValue("profile", cty.StringVal("chaos-pool-"+pools[job]))
		j.AppendNewBlock("retry", nil).Body().SetAttributeValue("attempts", cty.NumberIntVal(3))
		j.SetAttributeValue("env", cty.ObjectVal(map[string]cty.Value{MarkerEnv: cty.StringVal(markers)}))
		st := j.AppendNewBlock("step", []string{"work"}).Body()
		st.SetAttributeValue("command", cty.ListVal([]cty.Value{cty.StringVal(exe)}))
		st.SetAttributeRaw("env", hclwrite.TokensForObject([]hclwrite.ObjectAttrTokens{{
			Name:  hclwrite.TokensForIdentifier(workEnv),
			Value: hclwrite.TokensForTraversal(hcl.Traversal{hcl.TraverseRoot{Name: "var"}, hcl.TraverseAttr{Name: "ms"}}),
		}}))
	}
	return f.Bytes()
}

// codeUnderTest names what the agents were built from: the checkout's
// commit (and whether it had changes), or the prebuilt binary given.
func codeUnderTest(t *testing.T) string {
	if p := os.Getenv(testcluster.BinaryEnv); p != "" {
		return testcluster.BinaryEnv + "=" + p
	}
	out, err := exec.Command("git", "-C", testcluster.RepoRoot(t), "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	return "checkout at " + strings.TrimSpace(string(out))
}

func submitProbe(t *testing.T, s *testcluster.Server, src []byte, job string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.Client().Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{
		ProjectSource: src, Job: job, Variables: map[string]string{"ms": "200"},
	}))
	if err != nil {
		t.Fatalf("submitting the probe job %s: %v\nproject:\n%s", job, err, src)
	}
	return resp.Msg.Job.Id
}

func getJob(s *testcluster.Server, id string, stale bool) (*pb.Job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.Client().Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id, Stale: stale}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.Job, nil
}

func listJobs(s *testcluster.Server, stale bool) ([]*pb.Job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return rpc.AllJobs(ctx, s.Client().Jobs, &pb.ListJobsRequest{Project: project, Stale: stale})
}

// settle waits, each wait bounded, for a leader, for every acknowledged
// job to be terminal on it, for every server to apply the same index and
// for every marker process to be gone. It returns the leader's name (the
// reference view; the first server if there is none) and notes on what
// did not settle.
func settle(c *testcluster.Cluster, lr LoadResult, exe string) (string, []string) {
	var notes []string
	wait := func(what string, timeout time.Duration, cond func() (bool, string)) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		last := ""
		for {
			ok, msg := cond()
			if ok {
				return
			}
			last = msg
			select {
			case <-ctx.Done():
				notes = append(notes, fmt.Sprintf("not settled within %v: %s: %s", timeout, what, last))
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	var leader *testcluster.Server
	wait("a leader", 90*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l, err := c.Leader(ctx)
		if err != nil {
			return false, err.Error()
		}
		leader = l
		return true, ""
	})
	if leader == nil {
		leader = c.Servers[0]
	}
	next := 0
	wait("every acknowledged job terminal", terminalWait, func() (bool, string) {
		// A consistent read, on each server in turn: leadership may move
		// while the cluster recovers, and any server forwards.
		s := c.Servers[next%len(c.Servers)]
		jobs, err := listJobs(s, false)
		if err != nil {
			next++
			return false, s.Name() + ": " + err.Error()
		}
		byID := map[string]*pb.Job{}
		for _, j := range jobs {
			byID[j.Id] = j
		}
		var open []string
		for id := range lr.Acked {
			if j := byID[id]; j != nil && !rpc.JobTerminal(j.Status) {
				open = append(open, id+" "+j.Status)
			}
		}
		slices.Sort(open)
		if len(open) > 3 {
			open = append(open[:3], fmt.Sprintf("and %d more", len(open)-3))
		}
		return len(open) == 0, "non-terminal: " + strings.Join(open, ", ")
	})
	wait("every server on the same applied index", 60*time.Second, func() (bool, string) {
		idx, err := indexes(c)
		if err != nil {
			return false, err.Error()
		}
		return allSame(idx), fmt.Sprint(idx)
	})
	// A fenced attempt's step may still run when the job is over; its
	// last lines are part of the record.
	wait("every marker process ended", 60*time.Second, func() (bool, string) {
		n := runningCopies(exe)
		return n == 0, fmt.Sprintf("%d marker processes alive", n)
	})
	// The leader at the end is the reference view.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if l, err := c.Leader(ctx); err == nil {
		leader = l
	}
	return leader.Name(), notes
}

func indexes(c *testcluster.Cluster) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, s := range c.Servers {
		st, err := s.Status(context.Background())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Name(), err)
		}
		out[s.Name()] = st.LastIndex
	}
	return out, nil
}

func allSame(m map[string]uint64) bool {
	var first *uint64
	for _, v := range m {
		if first == nil {
			first = &v
		} else if v != *first {
			return false
		}
	}
	return true
}

// readAll reads every chaos job from every server with stale reads (each
// server's own state), retrying until no index moved during the reads.
func readAll(c *testcluster.Cluster) (map[string]map[string]*pb.Job, []string) {
	var notes []string
	var out map[string]map[string]*pb.Job
	for try := 1; try <= 10; try++ {
		before, err1 := indexes(c)
		out = map[string]map[string]*pb.Job{}
		var errs []string
		for _, s := range c.Servers {
			jobs, err := listJobs(s, true)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", s.Name(), err))
				continue
			}
			m := map[string]*pb.Job{}
			for _, j := range jobs {
				m[j.Id] = j
			}
			out[s.Name()] = m
		}
		after, err2 := indexes(c)
		if err1 == nil && err2 == nil && len(errs) == 0 && allSame(before) && fmt.Sprint(before) == fmt.Sprint(after) {
			return out, notes
		}
		if try == 10 {
			notes = append(notes, fmt.Sprintf("servers still moving while read (indexes %v then %v; %v %v %v): comparing the last reads", before, after, err1, err2, errs))
		}
		time.Sleep(time.Second)
	}
	return out, notes
}

// runningCopies counts the processes other than this one running exe: the
// markers.
func runningCopies(exe string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if p, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && p == exe && testcluster.PidAlive(pid) {
			n++
		}
	}
	return n
}

// keep copies the record of a run into a fresh directory under $TMPDIR.
func keep(stamp string, seed uint64, markers string, logs map[string]string) (string, error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("outpost-chaos-%s-seed%d-", stamp, seed))
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile(filepath.Join(markers, markerFile)); err == nil {
		if err := os.WriteFile(filepath.Join(dir, markerFile), b, 0o644); err != nil {
			return "", err
		}
	}
	for name, text := range logs {
		if err := os.WriteFile(filepath.Join(dir, name+".log"), []byte(text), 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}
