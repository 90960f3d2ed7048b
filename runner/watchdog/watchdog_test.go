package watchdog

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/runner/executor"
)

// The test binary is also the watchdog (as outpost is, by its hidden
// command) and a fake runner: a process to freeze and kill.
const fakeRunnerArg = "fake-runner"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case Command:
			os.Exit(Main(os.Stdin, os.Stderr))
		case fakeRunnerArg:
			os.Exit(fakeRunner(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

var containments = []executor.Containment{executor.ContainmentCgroup2, executor.ContainmentCgroup1, executor.ContainmentProcesses}

var seq atomic.Int64

func uniqueName() string { return fmt.Sprintf("wd-%d-%d", os.Getpid(), seq.Add(1)) }

// jobScript starts one process of each kind that escapes a process group
// kill, prints every pid (its own too), then "ready", and waits.
const jobScript = `echo pid=$$
nohup sleep 1000 >/dev/null 2>&1 & echo pid=$!
setsid sleep 1000 >/dev/null 2>&1 & echo pid=$!
(setsid sh -c 'echo $$ > "$D/pid"; exec sleep 1000' >/dev/null 2>&1 &) &
while [ ! -s "$D/pid" ]; do sleep 0.01; done; echo pid=$(cat "$D/pid")
echo ready
sleep 1000`

func jobSpec(h *executor.Host, dir string) executor.Spec {
	return executor.Spec{
		Host: h, JobID: "j-" + uniqueName(), Key: "k-" + uniqueName(),
		BaseEnv: []string{"PATH=/usr/bin:/bin"},
		Steps:   []executor.Step{{Name: "s", Script: jobScript, Env: map[string]string{"D": dir}}},
	}
}

func startWatchdog(t *testing.T, logger hclog.Logger) *Watchdog {
	t.Helper()
	w, err := Start([]string{os.Args[0], Command}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

var sweepOnce sync.Once

func newHost(t *testing.T, c executor.Containment, name string, w executor.Watchdog) *executor.Host {
	t.Helper()
	sweepOnce.Do(func() { executor.SweepDeadTestHosts("wd-") })
	h, err := executor.NewHost(executor.HostOptions{Name: name, Containment: c, Watchdog: w, Logger: testLogger(t)})
	if err != nil {
		t.Skipf("containment %q not available here: %v", c, err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// running is a job run in the background.
type running struct {
	mu    sync.Mutex
	pids  []int
	ready chan struct{}
	res   chan executor.Result
}

func runJob(ctx context.Context, spec executor.Spec) *running {
	r := &running{ready: make(chan struct{}), res: make(chan executor.Result, 1)}
	var once sync.Once
	go func() {
		r.res <- executor.Run(ctx, spec, func(l executor.LogLine) {
			if v, ok := strings.CutPrefix(l.Text, "pid="); ok && l.Stream == executor.Stdout {
				pid, _ := strconv.Atoi(v)
				r.mu.Lock()
				r.pids = append(r.pids, pid)
				r.mu.Unlock()
			}
			if l.Text == "ready" {
				once.Do(func() { close(r.ready) })
			}
		})
	}()
	return r
}

func (r *running) pidList() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.pids...)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, func() (bool, error) { return cond(), fmt.Errorf("still waiting for %s", what) })
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || !strings.HasPrefix(string(b[i+1:]), " Z")
}

func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "gone"
	}
	i := strings.LastIndexByte(string(b), ')')
	return strings.Fields(string(b[i+1:]))[0]
}

func waitAllGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	waitFor(t, fmt.Sprintf("processes %v to die", pids), 20*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// TestDeadlineKills: the "runner" (this test) sets a deadline and then does
// nothing more; the watchdog kills the job when it passes.
func TestDeadlineKills(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			w := startWatchdog(t, testLogger(t))
			h := newHost(t, c, uniqueName(), w)
			r := runJob(t.Context(), jobSpec(h, t.TempDir()))
			<-r.ready
			pids := r.pidList()
			if len(pids) != 4 {
				t.Fatalf("pids %v, want 4", pids)
			}
			if err := w.SetDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			res := <-r.res
			if res.Outcome != executor.Failed || !strings.Contains(res.Reason, "SIGKILL") {
				t.Errorf("job %s (%s), want it killed", res.Outcome, res.Reason)
			}
			waitAllGone(t, pids)
		})
	}
}

// TestMovedDeadlineDoesNotKill keeps moving the deadline, as a runner that
// confirms its leases does, for several times its length.
func TestMovedDeadlineDoesNotKill(t *testing.T) {
	t.Parallel()
	w := startWatchdog(t, testLogger(t))
	h := newHost(t, executor.ContainmentAuto, uniqueName(), w)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := runJob(ctx, jobSpec(h, t.TempDir()))
	<-r.ready
	const lease = 300 * time.Millisecond
	for end := time.Now().Add(5 * lease); time.Now().Before(end); time.Sleep(lease / 6) {
		if err := w.SetDeadline(time.Now().Add(lease)); err != nil {
			t.Fatal(err)
		}
	}
	for _, pid := range r.pidList() {
		if !alive(pid) {
			t.Errorf("process %d died while the deadline kept moving", pid)
		}
	}
	select {
	case res := <-r.res:
		t.Fatalf("job ended: %s (%s)", res.Outcome, res.Reason)
	default:
	}
	// Cleared, and then the job ends its own way.
	if err := w.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if res := <-r.res; res.Outcome != executor.Canceled {
		t.Fatalf("job %s (%s), want canceled by us, not killed", res.Outcome, res.Reason)
	}
	waitAllGone(t, r.pidList())
}

// TestCloseDoesNotKill: an orderly shutdown leaves the jobs alone.
func TestCloseDoesNotKill(t *testing.T) {
	t.Parallel()
	w := startWatchdog(t, testLogger(t))
	h := newHost(t, executor.ContainmentAuto, uniqueName(), w)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := runJob(ctx, jobSpec(h, t.TempDir()))
	<-r.ready
	if err := w.SetDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The closed watchdog cannot fire: after more than its deadline the
	// job is still there, and ends by cancellation.
	time.Sleep(400 * time.Millisecond)
	cancel()
	if res := <-r.res; res.Outcome != executor.Canceled {
		t.Fatalf("job %s (%s), want canceled by us", res.Outcome, res.Reason)
	}
	waitAllGone(t, r.pidList())
}

// fakeRunner is a runner process for the tests below: it starts a
// watchdog and one job, prints the job's pids, the watchdog's pid and
// "ready", sets a deadline if asked, and then waits to be frozen or killed.
// args: host name, containment, deadline (a duration, or 0), a directory.
func fakeRunner(args []string) int {
	name, c, dir := args[0], executor.Containment(args[1]), args[3]
	deadline, _ := time.ParseDuration(args[2])
	logger := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug})
	w, err := Start([]string{os.Args[0], Command}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h, err := executor.NewHost(executor.HostOptions{Name: name, Containment: c, Watchdog: w, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := runJob(context.Background(), jobSpec(h, dir))
	<-r.ready
	for _, pid := range r.pidList() {
		fmt.Printf("pid=%d\n", pid)
	}
	fmt.Printf("watchdog=%d\n", w.Pid())
	if deadline > 0 {
		_ = w.SetDeadline(time.Now().Add(deadline))
	}
	fmt.Println("ready")
	res := <-r.res
	fmt.Fprintf(os.Stderr, "job ended: %+v\n", res)
	select {}
}

type fake struct {
	cmd      *exec.Cmd
	pids     []int
	watchdog int
}

// startFake starts a fake runner in a process group of its own and reads
// its report.
func startFake(t *testing.T, name string, c executor.Containment, deadline time.Duration) *fake {
	t.Helper()
	cmd := exec.Command(os.Args[0], fakeRunnerArg, name, string(c), deadline.String(), t.TempDir())
	cmd.Stderr = testWriter{t}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &fake{cmd: cmd}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "pid="); ok {
			pid, _ := strconv.Atoi(v)
			f.pids = append(f.pids, pid)
		} else if v, ok := strings.CutPrefix(line, "watchdog="); ok {
			f.watchdog, _ = strconv.Atoi(v)
		} else if line == "ready" {
			break
		}
	}
	if len(f.pids) != 4 || f.watchdog == 0 {
		t.Skipf("fake runner did not start (containment %s not available?): pids %v, watchdog %d", c, f.pids, f.watchdog)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return f
}

// TestRunnerDeathKills: SIGKILL the runner; its watchdog sees its stdin
// close and kills the job, however detached its processes are.
func TestRunnerDeathKills(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			name := uniqueName()
			f := startFake(t, name, c, 0)
			if err := f.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			waitAllGone(t, f.pids)
			waitFor(t, "the watchdog to exit", 10*time.Second, func() bool { return !alive(f.watchdog) })
			// What the dead runner left of its cgroups, the next runner of
			// the same name removes.
			newHost(t, c, name, nil)
		})
	}
}

// TestSurvivesStoppedRunner freezes the runner's whole process group, as
// a ^Z or a SIGSTOP to the group would: the watchdog, in a session of its
// own, is not frozen, and kills the job when the deadline passes.
func TestSurvivesStoppedRunner(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			name := uniqueName()
			f := startFake(t, name, c, 500*time.Millisecond)
			if err := syscall.Kill(-f.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the runner to stop", 5*time.Second, func() bool { return procState(f.cmd.Process.Pid) == "T" })
			waitAllGone(t, f.pids)
			if s := procState(f.watchdog); s == "T" || s == "gone" {
				t.Fatalf("watchdog state %s, want it running", s)
			}
			if s := procState(f.cmd.Process.Pid); s != "T" {
				t.Fatalf("runner state %s, want it still stopped", s)
			}
			// Thawed and then killed, the runner takes the watchdog with it.
			_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGCONT)
			_ = f.cmd.Process.Kill()
			waitFor(t, "the watchdog to exit", 10*time.Second, func() bool { return !alive(f.watchdog) })
			newHost(t, c, name, nil)
		})
	}
}

// TestFootprint reports the watchdog's resident memory (the test binary
// here; the report has the outpost binary's).
func TestFootprint(t *testing.T) {
	w := startWatchdog(t, nil)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") || strings.HasPrefix(l, "Threads:") {
			t.Log(l)
		}
	}
}

func TestProtocolRoundTrip(t *testing.T) {
	cases := []executor.Container{
		{Key: "j-0123456789abcdef-42", Cgroups: []string{"/sys/fs/cgroup/unified/outpost-r1/j-1", "/sys/fs/cgroup/memory/a b/j-1"}},
		{Key: "k", Groups: []int{123, 456}, JobID: "j-1 %= odd"},
		{Key: "only"},
	}
	for _, c := range cases {
		m, err := decode(encodeWatch(c))
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if fmt.Sprint(m.container) != fmt.Sprint(c) || m.verb != "watch" {
			t.Errorf("round trip of %+v gave %+v", c, m)
		}
	}
	for _, line := range []string{"", "watch", "watch k cgroup=relative", "watch k group=1", "watch k colour=red", "deadline -1", "deadline x", "forget", "close now", "kill all"} {
		if _, err := decode(line); err == nil {
			t.Errorf("decode(%q) accepted", line)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("watch k cgroup=/sys/fs/cgroup/x group=12 job=j-1")
	f.Add("forget k%20x")
	f.Add("deadline 123456789")
	f.Add("close")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := decode(line)
		if err != nil || m.verb != "watch" {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decode(encodeWatch(m.container))
		if err != nil || fmt.Sprint(again.container) != fmt.Sprint(m.container) {
			t.Fatalf("%q: re-encoded as %q: %v", line, encodeWatch(m.container), err)
		}
	})
}

func TestBootClockAhead(t *testing.T) {
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		t.Fatal(err)
	}
	// CLOCK_BOOTTIME is CLOCK_MONOTONIC plus the time spent suspended:
	// read later, it is never behind.
	if b := bootNow(); b < mono.Nano() {
		t.Fatalf("boottime %d behind monotonic %d", b, mono.Nano())
	}
}
