package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Every containment this host can run. NewHost refuses a forced one the
// host does not allow, and the tests skip it.
var containments = []Containment{ContainmentCgroup2, ContainmentCgroup1, ContainmentProcesses}

var hostSeq atomic.Int64

// hostName is unique to this test process and call, so parallel tests and
// other test processes on the machine never share (or sweep) cgroups.
func hostName() string {
	return fmt.Sprintf("test-%d-%d", os.Getpid(), hostSeq.Add(1))
}

func testHost(t *testing.T, c Containment) *Host {
	t.Helper()
	return testHostNamed(t, c, hostName(), nil)
}

var sweepOnce sync.Once

func testHostNamed(t *testing.T, c Containment, name string, wd Watchdog) *Host {
	t.Helper()
	sweepOnce.Do(func() { SweepDeadTestHosts("test-") })
	h, err := NewHost(HostOptions{Name: name, Containment: c, Watchdog: wd, Logger: testLogger(t)})
	if err != nil {
		t.Skipf("containment %q not available here: %v", c, err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing host: %v", err)
		}
	})
	if h.Containment() != c && c != ContainmentAuto {
		t.Fatalf("asked for %q, got %q", c, h.Containment())
	}
	return h
}

func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "host", Output: testWriter{t}, Level: hclog.Debug})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// printedPids returns the pids a step printed as "pid=N" lines.
func printedPids(rec *recorder) []int {
	var pids []int
	for _, l := range rec.texts(Stdout, "") {
		if v, ok := strings.CutPrefix(l, "pid="); ok {
			if pid, err := strconv.Atoi(v); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// waitReallyGone is waitGone for a process that may have re-parented to
// this process (a subreaper): it must have been reaped too.
func waitReallyGone(t *testing.T, pid int) {
	t.Helper()
	if !pollUntil(5*time.Second, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return errors.Is(err, os.ErrNotExist)
	}) {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		t.Fatalf("process %d still there: %s", pid, stat)
	}
}

func TestHostDescribe(t *testing.T) {
	t.Parallel()
	h := testHost(t, ContainmentAuto)
	t.Logf("containment %s: %s", h.Containment(), h.Describe())
	if h.Describe() == "" {
		t.Fatal("no description")
	}
}

// TestLeftoversKilled is the heart of job containment: whatever a step
// leaves running, however it detached itself, is gone once Run returns,
// whichever way the job ended.
func TestLeftoversKilled(t *testing.T) {
	t.Parallel()
	scenarios := []struct{ name, script string }{
		{"nohup", `nohup sleep 1000 & echo pid=$!`},
		{"setsid", `setsid sleep 1000 & echo pid=$!`},
		{"double fork", `(setsid sh -c 'echo $$ > "$D/pid"; exec sleep 1000' &) &
while [ ! -s "$D/pid" ]; do sleep 0.01; done; echo pid=$(cat "$D/pid")`},
	}
	ends := []struct {
		name    string
		tail    string
		timeout time.Duration
		cancel  bool
		want    Outcome
	}{
		{name: "normal end", want: Succeeded},
		{name: "cancel", tail: "\necho ready; sleep 1000", cancel: true, want: Canceled},
		{name: "timeout", tail: "\nsleep 1000", timeout: 3 * time.Second, want: TimedOut},
	}
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			for _, sc := range scenarios {
				for _, end := range ends {
					t.Run(sc.name+"/"+end.name, func(t *testing.T) {
						t.Parallel()
						rec := &recorder{}
						ctx := t.Context()
						if end.cancel {
							ctx, _ = rec.cancelOn(t, "ready")
						}
						res := runWith(t, ctx, Spec{
							Host: h, JobID: "j-" + hostName(), Timeout: end.timeout, AbortTimeout: time.Minute,
							Steps: []Step{{Name: "s", Script: sc.script + end.tail, Env: map[string]string{"D": t.TempDir()}}},
						}, rec)
						if res.Outcome != end.want {
							t.Fatalf("outcome %s (%s), want %s", res.Outcome, res.Reason, end.want)
						}
						pids := printedPids(rec)
						if len(pids) != 1 {
							t.Fatalf("step printed pids %v, want one", pids)
						}
						t.Cleanup(func() { _ = syscall.Kill(pids[0], syscall.SIGKILL) })
						if c == ContainmentProcesses {
							waitReallyGone(t, pids[0])
						} else {
							waitGone(t, pids[0])
						}
						if end.want == Succeeded {
							want := fmt.Sprintf("==> killed %d %s left running by the job", res.KilledLeftovers, plural(res.KilledLeftovers, "process", "processes"))
							if res.KilledLeftovers < 1 || !slices.Contains(rec.texts(System, ""), want) {
								t.Errorf("killed %d leftovers; system lines %q", res.KilledLeftovers, rec.texts(System, ""))
							}
						}
						// The container killed the leftovers before the
						// output was drained: nothing held it open.
						for _, l := range rec.texts(System, "") {
							if strings.Contains(l, "still holds its output open") {
								t.Errorf("output drained the slow way: %q", l)
							}
						}
					})
				}
			}
		})
	}
}

// TestLaterStepSeesEarlierService checks that a background process lives on
// until the job ends, not just until its step does: a step may start a
// service for the steps after it.
func TestLaterStepSeesEarlierService(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			res, rec := run(t, t.Context(), Spec{Host: h, JobID: "j-" + hostName(), Steps: []Step{
				{Name: "start", Script: `setsid sleep 1000 & echo $! > "$D/pid"; echo pid=$!`},
				{Name: "use", Script: `kill -0 $(cat "$D/pid") && echo alive`},
			}, Env: map[string]string{"D": t.TempDir()}})
			if res.Outcome != Succeeded || !slices.Contains(rec.texts(Stdout, "use"), "alive") {
				t.Fatalf("%s (%s); second step said %q", res.Outcome, res.Reason, rec.texts(Stdout, "use"))
			}
			for _, pid := range printedPids(rec) {
				waitGone(t, pid)
			}
		})
	}
}

func TestUsageReported(t *testing.T) {
	t.Parallel()
	const alloc = 50_000_000
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			res, _ := run(t, t.Context(), Spec{Host: h, Steps: []Step{
				{Name: "mem", Command: helperCommand(fmt.Sprintf("alloc=%d", alloc))},
				{Name: "cpu", Command: helperCommand("burn=200ms")},
			}})
			if res.Outcome != Succeeded {
				t.Fatalf("%s: %s", res.Outcome, res.Reason)
			}
			t.Logf("peak memory %d bytes, CPU time %v", res.PeakMemoryBytes, res.CPUTime)
			if res.PeakMemoryBytes < alloc {
				t.Errorf("peak memory %d bytes, want at least the %d the step touched", res.PeakMemoryBytes, alloc)
			}
			if res.CPUTime < 200*time.Millisecond {
				t.Errorf("CPU time %v, want at least the 200ms the step burnt", res.CPUTime)
			}
		})
	}
}

// isolatedSpec is a job with on_demand limits whose launcher is this test
// binary.
func isolatedSpec(h *Host, lim Limits, steps ...Step) Spec {
	return Spec{
		Host:      h,
		Steps:     steps,
		BaseEnv:   []string{"PATH=/usr/bin:/bin", launcherEnv + "=1"},
		Isolation: &Isolation{Limits: lim, Launcher: []string{os.Args[0]}},
	}
}

func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 20
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			if h.os.memoryController == "" {
				// RLIMIT_AS instead, which a Go program cannot start
				// under at this size: check the shell sees it.
				res, rec := run(t, t.Context(), isolatedSpec(h, Limits{MemoryBytes: limit}, Step{Name: "s", Script: "ulimit -v"}))
				if res.Outcome != Succeeded || !slices.Equal(rec.texts(Stdout, "s"), []string{strconv.Itoa(limit >> 10)}) {
					t.Fatalf("%s (%s), ulimit -v = %q, want %d", res.Outcome, res.Reason, rec.texts(Stdout, "s"), limit>>10)
				}
				return
			}
			res, rec := run(t, t.Context(), isolatedSpec(h, Limits{MemoryBytes: limit},
				// A shell step: a Go helper built with -race needs more
				// than the limit just to start.
				Step{Name: "under", Script: "head -c 16000000 /dev/zero | cat >/dev/null"},
				Step{Name: "over", Command: helperCommand("alloc=200000000")},
			))
			if res.Outcome != Failed || res.FailedStep != "over" {
				t.Fatalf("%s at %q (%s), want the step allocating past the limit to fail", res.Outcome, res.FailedStep, res.Reason)
			}
			if !strings.Contains(res.Reason, "memory limit of 64 MiB reached") {
				t.Errorf("reason %q does not name the memory limit", res.Reason)
			}
			// The kernel force-charges a few pages past the limit while it
			// kills (allocations that may not fail), and the v1 watermark
			// records them: 67,112,960 for a 64 MiB limit was seen here.
			// More than 64 KiB over would mean the limit is not the job's.
			const slack = 64 << 10
			if res.PeakMemoryBytes > limit+slack {
				t.Errorf("peak memory %d above the limit %d (+%d)", res.PeakMemoryBytes, limit, slack)
			}
			t.Logf("system lines: %q", rec.texts(System, ""))
		})
	}
}

// TestMemoryLimitOtherUser runs an on_demand job as another user, whose
// launcher must still be able to enter the job's memory cgroup.
func TestMemoryLimitOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	launcher := publicCopy(t, os.Args[0])
	for _, c := range []Containment{ContainmentCgroup2, ContainmentCgroup1} {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			dir, err := os.MkdirTemp("", "outpost-iso-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			spec := isolatedSpec(h, Limits{MemoryBytes: 64 << 20},
				Step{Name: "under", Script: "id -u; x=$(head -c 8000000 /dev/zero | tr '\\0' a); echo ${#x}"},
				// A shell variable of 200 MB: dash holds it all in memory.
				Step{Name: "over", Script: "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"},
			)
			spec.Dir = dir
			spec.Isolation.SetUser, spec.Isolation.UID, spec.Isolation.GID = true, uint32(uid), uint32(gid)
			spec.Isolation.Launcher = []string{launcher}
			res, rec := run(t, t.Context(), spec)
			if got := rec.texts(Stdout, "under"); !slices.Equal(got, []string{u.Uid, "8000000"}) {
				t.Errorf("first step printed %q, want uid %s and the size", got, u.Uid)
			}
			if res.Outcome != Failed || res.FailedStep != "over" || !strings.Contains(res.Reason, "memory limit of 64 MiB reached") {
				t.Fatalf("%s at %q (%s), want the step past the limit to fail on it", res.Outcome, res.FailedStep, res.Reason)
			}
		})
	}
}

// publicCopy copies a program to a directory any user may enter.
func publicCopy(t *testing.T, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "outpost-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCPUQuota reads the quota back from the cgroup files, from inside the
// step, whose cgroup it is.
func TestCPUQuota(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			key := "cpu-" + hostName()
			var file, want string
			switch h.os.cpuController {
			case "cgroup v2":
				file, want = filepath.Join(h.os.v2Parent, key, "cpu.max"), "50000 100000"
			case "cgroup v1":
				for _, v := range h.os.v1 {
					if v.has("cpu") {
						file, want = filepath.Join(v.parent, key, "cpu.cfs_quota_us"), "50000"
					}
				}
			}
			spec := isolatedSpec(h, Limits{CPUs: 0.5}, Step{Name: "s", Script: `cat "$F"; cat /proc/self/cgroup`, Env: map[string]string{"F": file}})
			spec.Key = key
			res, rec := run(t, t.Context(), spec)
			if file == "" {
				if res.Outcome != Failed || !strings.Contains(res.Reason, "cannot set a CPU quota") {
					t.Fatalf("%s (%s); want the job refused for its cpus limit", res.Outcome, res.Reason)
				}
				return
			}
			out := rec.texts(Stdout, "s")
			if res.Outcome != Succeeded || len(out) == 0 || out[0] != want {
				t.Fatalf("%s (%s); quota read back %q, want %q", res.Outcome, res.Reason, out, want)
			}
			if !slices.ContainsFunc(out[1:], func(l string) bool { return strings.HasSuffix(l, "/"+key) && strings.Contains(l, ":cpu") }) {
				t.Errorf("step's cgroups %q do not include the job's cpu cgroup", out[1:])
			}
		})
	}
}

func TestCPUsWithoutHostRefused(t *testing.T) {
	t.Parallel()
	res, _ := run(t, t.Context(), isolatedSpec(nil, Limits{CPUs: 1}, Step{Name: "s", Script: "true"}))
	if res.Outcome != Failed || !strings.Contains(res.Reason, "cpus = 1") {
		t.Fatalf("%s (%s); want the job refused", res.Outcome, res.Reason)
	}
}

// TestStepsStartInsideTheJobCgroups checks placement from the step's own
// point of view: every hierarchy the job has a cgroup in lists it in
// /proc/self/cgroup, for a plain step and for one started by the launcher.
func TestStepsStartInsideTheJobCgroups(t *testing.T) {
	t.Parallel()
	for _, c := range []Containment{ContainmentCgroup2, ContainmentCgroup1} {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			h := testHost(t, c)
			for _, lim := range []Limits{{}, {MemoryBytes: 1 << 30}} {
				key := "place-" + hostName()
				spec := isolatedSpec(h, lim, Step{Name: "s", Script: "cat /proc/self/cgroup"})
				spec.Key = key
				res, rec := run(t, t.Context(), spec)
				if res.Outcome != Succeeded {
					t.Fatalf("%s: %s", res.Outcome, res.Reason)
				}
				want := 0
				if h.os.v2Parent != "" {
					want++
				}
				for _, v := range h.os.v1 {
					if v.has("memory") || v.has("cpuacct") || v.has("pids") || v.has("freezer") {
						want++
					}
				}
				got := 0
				for _, l := range rec.texts(Stdout, "s") {
					if strings.HasSuffix(l, "/"+key) {
						got++
					}
				}
				if got != want || want == 0 {
					t.Errorf("limits %+v: step is in %d of the job's %d cgroups: %q", lim, got, want, rec.texts(Stdout, "s"))
				}
			}
			// And no thread of ours was left in a job's cgroups after
			// starting the steps.
			tasks, _ := filepath.Glob("/proc/self/task/*/cgroup")
			for _, f := range tasks {
				b, _ := os.ReadFile(f)
				if strings.Contains(string(b), "/outpost-"+h.name+"/") {
					t.Errorf("thread %s is still in a job cgroup:\n%s", f, b)
				}
			}
		})
	}
}

// startIn starts a detached sleep in a job container, as a step would,
// and returns its pid.
func startIn(t *testing.T, ctr *jobContainer) int {
	t.Helper()
	rec := &recorder{}
	runProcess(t.Context(), procSpec{
		path: shellPath, args: []string{shellPath, "-c", "setsid sleep 1000 >/dev/null 2>&1 & echo pid=$!"},
		env: testEnv, emit: func(s Stream, l string) { rec.log(LogLine{Stream: s, Text: l}) },
		abortTimeout: func() time.Duration { return time.Second }, onSignal: func(syscall.Signal, time.Duration) {},
		attr: (*Isolation)(nil).sysProcAttr(), start: ctr.start,
	})
	pids := printedPids(rec)
	if len(pids) != 1 {
		t.Fatalf("pids %v", pids)
	}
	t.Cleanup(func() { _ = syscall.Kill(pids[0], syscall.SIGKILL) })
	return pids[0]
}

// TestKillFallbacks runs the kills this kernel does not need but older or
// smaller ones do: cgroup v2 without cgroup.kill (before Linux 5.14), and
// cgroup v1 without a freezer.
func TestKillFallbacks(t *testing.T) {
	t.Parallel()
	t.Run("v2 freeze", func(t *testing.T) {
		t.Parallel()
		h := testHost(t, ContainmentCgroup2)
		ctr, err := h.contain("freeze-"+hostName(), "j-freeze", Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pid := startIn(t, ctr)
		if err := freezeKillV2(ctr.v2); err != nil {
			t.Fatal(err)
		}
		waitGone(t, pid)
		if b, _ := os.ReadFile(filepath.Join(ctr.v2, "cgroup.freeze")); strings.TrimSpace(string(b)) != "0" {
			t.Errorf("cgroup left frozen: %q", b)
		}
		ctr.kill()
		ctr.remove()
	})
	t.Run("v1 without freezer", func(t *testing.T) {
		t.Parallel()
		h := testHost(t, ContainmentCgroup1)
		ctr, err := h.contain("nofreeze-"+hostName(), "j-nofreeze", Limits{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pid := startIn(t, ctr)
		var dirs []string
		for i, v := range ctr.v1 {
			if !v.has("freezer") {
				dirs = append(dirs, ctr.v1Dirs[i])
			}
		}
		n, err := killV1(dirs, os.Getpid())
		if err != nil || n != 1 {
			t.Fatalf("killed %d: %v", n, err)
		}
		waitGone(t, pid)
		ctr.kill()
		ctr.remove()
	})
}

// TestStaleCgroupsSwept plays a runner that died with a job running: its
// next life (same name) kills the job and removes its cgroups.
func TestStaleCgroupsSwept(t *testing.T) {
	t.Parallel()
	for _, c := range []Containment{ContainmentCgroup2, ContainmentCgroup1} {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			name := hostName()
			// A runner process that dies with a job running, leaving a
			// process in the job's cgroups: nobody will end them.
			out, err := exec.Command(os.Args[0], helperFlag, "leave="+name+":"+string(c)).Output()
			if err != nil {
				t.Skipf("helper runner: %v (%s)", err, out)
			}
			var pid int
			var dirs []string
			for _, l := range strings.Fields(string(out)) {
				if v, ok := strings.CutPrefix(l, "pid="); ok {
					pid, _ = strconv.Atoi(v)
				} else if v, ok := strings.CutPrefix(l, "cgroup="); ok {
					dirs = append(dirs, v)
				}
			}
			if pid == 0 || len(dirs) == 0 {
				t.Fatalf("helper runner printed %q", out)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

			// The next life of the same runner, in another process.
			testHostNamed(t, c, name, nil)
			waitGone(t, pid)
			for _, d := range dirs {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stale cgroup %s still there after the sweep (%v)", d, err)
				}
				if parent := filepath.Dir(d); !errors.Is(func() error { _, err := os.Stat(parent); return err }(), os.ErrNotExist) {
					t.Errorf("the dead runner's parent cgroup %s is still there", parent)
				}
			}
		})
	}
}

// Two runners of one name on one host (two dev agents) do not sweep each
// other's jobs: only the cgroups of a runner process that is dead are.
func TestLiveNamesakeNotSwept(t *testing.T) {
	t.Parallel()
	for _, c := range []Containment{ContainmentCgroup2, ContainmentCgroup1} {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			name := hostName()
			h := testHostNamed(t, c, name, nil)
			ctr, err := h.contain("live-job", "j-live", Limits{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ctr.remove()
			defer ctr.kill()
			pid := startIn(t, ctr)
			// Another process starts a runner of the same name.
			out, err := exec.Command(os.Args[0], helperFlag, "leave="+name+":"+string(c)).Output()
			if err != nil {
				t.Skipf("helper runner: %v (%s)", err, out)
			}
			for _, l := range strings.Fields(string(out)) {
				if v, ok := strings.CutPrefix(l, "pid="); ok {
					if p, err := strconv.Atoi(v); err == nil {
						t.Cleanup(func() { _ = syscall.Kill(p, syscall.SIGKILL) })
					}
				}
			}
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(b), ") Z ") {
				t.Fatalf("a runner of the same name in another process killed this one's job (pid %d)", pid)
			}
		})
	}
}

// TestFencedShortensAbortTimeout cancels with a Fenced cause: a step that
// ignores SIGTERM gets the fence's grace, not its own minute-long abort
// timeout, and the reason says why it stopped.
func TestFencedShortensAbortTimeout(t *testing.T) {
	t.Parallel()
	for _, withHost := range []bool{false, true} {
		t.Run(fmt.Sprintf("host=%v", withHost), func(t *testing.T) {
			t.Parallel()
			var h *Host
			if withHost {
				h = testHost(t, ContainmentAuto)
			}
			rec := &recorder{}
			ctx, cancel := context.WithCancelCause(t.Context())
			rec.onLine = func(l LogLine) {
				if l.Text == "ready" {
					cancel(Fenced{Grace: 200 * time.Millisecond, Reason: "lease 7 not confirmed"})
				}
			}
			res := runWith(t, ctx, Spec{Host: h, AbortTimeout: 10 * time.Minute, Steps: []Step{
				{Name: "s", Script: "trap '' TERM; echo ready; sleep 1000"},
			}}, rec)
			want := `lease 7 not confirmed: step "s" killed by SIGKILL after abort timeout 200ms`
			if res.Outcome != Canceled || res.Reason != want {
				t.Fatalf("%s: %q\nwant %s: %q", res.Outcome, res.Reason, Canceled, want)
			}
			sys := rec.texts(System, "s")
			for _, line := range []string{
				"==> lease 7 not confirmed; sending SIGTERM to step s",
				"==> step s still running 200ms after SIGTERM; sending SIGKILL",
			} {
				if !slices.Contains(sys, line) {
					t.Errorf("system lines %q lack %q", sys, line)
				}
			}
		})
	}
}

// TestFencedLongerGraceDoesNotExtend: a fence never gives more time than the
// job's own abort timeout.
func TestFencedLongerGraceDoesNotExtend(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	ctx, cancel := context.WithCancelCause(t.Context())
	rec.onLine = func(l LogLine) {
		if l.Text == "ready" {
			cancel(Fenced{Grace: time.Hour})
		}
	}
	res := runWith(t, ctx, Spec{AbortTimeout: 100 * time.Millisecond, Steps: []Step{
		{Name: "s", Script: "trap '' TERM; echo ready; sleep 1000"},
	}}, rec)
	if want := `fenced: step "s" killed by SIGKILL after abort timeout 100ms`; res.Reason != want {
		t.Fatalf("reason %q, want %q", res.Reason, want)
	}
}

// watchRecorder is a Watchdog that writes down what it is told.
type watchRecorder struct {
	mu     sync.Mutex
	events []string
	last   Container
}

func (w *watchRecorder) Watch(c Container) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, "watch "+c.Key)
	w.last = c
	return nil
}

func (w *watchRecorder) Forget(key string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, "forget "+key)
	return nil
}

func TestWatchdogToldOfContainers(t *testing.T) {
	t.Parallel()
	for _, c := range containments {
		t.Run(string(c), func(t *testing.T) {
			t.Parallel()
			wd := &watchRecorder{}
			h := testHostNamed(t, c, hostName(), wd)
			res, _ := run(t, t.Context(), Spec{Host: h, Key: "k1", JobID: "j-" + hostName(), Steps: []Step{
				{Name: "a", Command: []string{"true"}}, {Name: "b", Command: []string{"true"}},
			}})
			if res.Outcome != Succeeded {
				t.Fatalf("%s: %s", res.Outcome, res.Reason)
			}
			wd.mu.Lock()
			defer wd.mu.Unlock()
			if wd.events[0] != "watch k1" || wd.events[len(wd.events)-1] != "forget k1" {
				t.Errorf("events %q", wd.events)
			}
			if c == ContainmentProcesses {
				if len(wd.last.Groups) != 2 || wd.last.JobID == "" {
					t.Errorf("last description %+v, want both steps' groups and the job id", wd.last)
				}
			} else if len(wd.last.Cgroups) == 0 {
				t.Errorf("last description %+v has no cgroups", wd.last)
			}
		})
	}
}

func TestInvalidKey(t *testing.T) {
	t.Parallel()
	h := testHost(t, ContainmentAuto)
	res, _ := run(t, t.Context(), Spec{Host: h, Key: "../escape", Steps: []Step{{Name: "s", Command: []string{"true"}}}})
	if res.Outcome != Failed || !strings.Contains(res.Reason, "key") {
		t.Fatalf("%s: %s", res.Outcome, res.Reason)
	}
}

func TestParseCgroupLayout(t *testing.T) {
	mounts := parseMountInfo([]byte(`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified\040x rw,relatime - cgroup2 cgroup2 rw
`))
	if len(mounts) != 3 {
		t.Fatalf("mounts %+v", mounts)
	}
	if m := mounts[0]; m.point != "/sys/fs/cgroup/cpu,cpuacct" || !slices.Equal(m.controllers, []string{"cpu", "cpuacct"}) {
		t.Errorf("cpu mount %+v", m)
	}
	if m := mounts[2]; !m.v2 || m.point != "/sys/fs/cgroup/unified x" {
		t.Errorf("v2 mount %+v", m)
	}
	own := parseProcCgroup([]byte("4:memory:/docker/abc/sub\n2:cpu,cpuacct:/a\n0::/u\n"))
	if own["memory"] != "/docker/abc/sub" || own["cpuacct"] != "/a" || own[""] != "/u" {
		t.Errorf("own %v", own)
	}
	if d := cgroupDir(mounts[1], own["memory"]); d != "/sys/fs/cgroup/memory/sub" {
		t.Errorf("memory dir %q", d)
	}
	if d := cgroupDir(mounts[1], "/elsewhere"); d != "" {
		t.Errorf("dir outside the mount's root: %q", d)
	}
}

// BenchmarkRunTrue measures what containment costs a job of one /bin/true
// step: making the container, starting into it, killing and removing it.
func BenchmarkRunTrue(b *testing.B) {
	for _, c := range append([]Containment{"none"}, containments...) {
		b.Run(string(c), func(b *testing.B) {
			var h *Host
			if c != "none" {
				var err error
				if h, err = NewHost(HostOptions{Name: hostName(), Containment: c}); err != nil {
					b.Skip(err)
				}
				defer h.Close()
			}
			spec := Spec{Host: h, JobID: "j-bench", BaseEnv: testEnv, Steps: []Step{{Name: "t", Command: []string{"/bin/true"}}}}
			for b.Loop() {
				if res := Run(context.Background(), spec, nil); res.Outcome != Succeeded {
					b.Fatalf("%s: %s", res.Outcome, res.Reason)
				}
			}
		})
	}
}
