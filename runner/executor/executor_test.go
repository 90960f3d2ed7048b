package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testwait"
)

// testEnv is a small, predictable BaseEnv; tests that care about PATH set
// their own.
var testEnv = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/nonexistent"}

// recorder collects log lines; Run may call it from several goroutines.
type recorder struct {
	mu     sync.Mutex
	lines  []LogLine
	onLine func(LogLine) // optional hook, called outside the lock
}

func (r *recorder) log(l LogLine) {
	r.mu.Lock()
	r.lines = append(r.lines, l)
	r.mu.Unlock()
	if r.onLine != nil {
		r.onLine(l)
	}
}

// texts returns the text of the lines of one stream, in order; step "" matches
// every step.
func (r *recorder) texts(stream Stream, step string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if l.Stream == stream && (step == "" || l.Step == step) {
			out = append(out, l.Text)
		}
	}
	return out
}

func (r *recorder) all() []LogLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// cancelOn returns a context that is canceled when a line with text appears,
// and the time that happened.
func (r *recorder) cancelOn(t *testing.T, text string) (context.Context, func() time.Time) {
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	var at time.Time
	var mu sync.Mutex
	r.onLine = func(l LogLine) {
		if l.Text == text {
			once.Do(func() {
				mu.Lock()
				at = time.Now()
				mu.Unlock()
				cancel()
			})
		}
	}
	t.Cleanup(cancel)
	return ctx, func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
}

func run(t *testing.T, ctx context.Context, spec Spec) (Result, *recorder) {
	t.Helper()
	rec := &recorder{}
	return runWith(t, ctx, spec, rec), rec
}

func runWith(t *testing.T, ctx context.Context, spec Spec, rec *recorder) Result {
	t.Helper()
	if spec.BaseEnv == nil {
		spec.BaseEnv = testEnv
	}
	res := Run(ctx, spec, rec.log)
	t.Logf("result: %+v", res)
	return res
}

func wantResult(t *testing.T, got, want Result) {
	t.Helper()
	if got != want {
		t.Errorf("result = %+v\n          want %+v", got, want)
	}
}

func TestRunSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		driver     string
		steps      []Step
		wantOut    []string
		wantHeader []string
	}{
		{
			name:   "exec",
			driver: DriverExec,
			steps: []Step{
				{Name: "one", Command: []string{"echo", "first"}},
				{Name: "two", Command: []string{"printf", `second\nthird\r\nfourth`}},
			},
			wantOut:    []string{"first", "second", "third", "fourth"},
			wantHeader: []string{"==> step one: echo first", `==> step two: printf 'second\nthird\r\nfourth'`},
		},
		{
			name:   "shell",
			driver: DriverShell,
			steps: []Step{
				{Name: "one", Script: "echo first; echo second"},
				{Name: "two", Script: "for i in 3 4; do echo line$i; done\necho done"},
			},
			wantOut:    []string{"first", "second", "line3", "line4", "done"},
			wantHeader: []string{"==> step one: echo first; echo second", "==> step two: for i in 3 4; do echo line$i; done ..."},
		},
		{
			name:   "auto mixes both",
			driver: DriverAuto,
			steps: []Step{
				{Name: "one", Command: []string{"echo", "first"}},
				{Name: "two", Script: "echo second"},
			},
			wantOut:    []string{"first", "second"},
			wantHeader: []string{"==> step one: echo first", "==> step two: echo second"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, rec := run(t, t.Context(), Spec{JobID: "j1", Driver: tt.driver, Steps: tt.steps})
			wantResult(t, res, Result{Outcome: Succeeded})
			if got := rec.texts(Stdout, ""); !slices.Equal(got, tt.wantOut) {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
			if got := rec.texts(System, ""); !slices.Equal(got, tt.wantHeader) {
				t.Errorf("system = %q, want %q", got, tt.wantHeader)
			}
			// Every line is attributed to its step, and headers come first.
			var seen []string
			for _, l := range rec.all() {
				if l.Time.IsZero() {
					t.Errorf("line %q has no time", l.Text)
				}
				if len(seen) == 0 || seen[len(seen)-1] != l.Step {
					seen = append(seen, l.Step)
					if l.Stream != System {
						t.Errorf("step %s: first line %q is not its header", l.Step, l.Text)
					}
				}
			}
			if want := []string{"one", "two"}; !slices.Equal(seen, want) {
				t.Errorf("steps in log order = %q, want %q", seen, want)
			}
		})
	}
}

func TestStdoutStderrSeparated(t *testing.T) {
	t.Parallel()
	res, rec := run(t, t.Context(), Spec{Steps: []Step{
		{Name: "s", Script: "echo out1; echo err1 >&2; echo out2; printf 'err2' >&2"},
	}})
	wantResult(t, res, Result{Outcome: Succeeded})
	if got, want := rec.texts(Stdout, "s"), []string{"out1", "out2"}; !slices.Equal(got, want) {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := rec.texts(Stderr, "s"), []string{"err1", "err2"}; !slices.Equal(got, want) {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

func TestFailingSteps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		failing    Step
		want       Result
		wantSystem string
	}{
		{
			name:       "exit code",
			failing:    Step{Name: "build", Script: "echo compiling; exit 3"},
			want:       Result{Outcome: Failed, ExitCode: 3, Reason: `step "build" exited with code 3`, FailedStep: "build"},
			wantSystem: "==> step build exited with code 3",
		},
		{
			name:       "exec exit code",
			failing:    Step{Name: "build", Command: []string{"sh", "-c", "exit 2"}},
			want:       Result{Outcome: Failed, ExitCode: 2, Reason: `step "build" exited with code 2`, FailedStep: "build"},
			wantSystem: "==> step build exited with code 2",
		},
		{
			name:       "command not found",
			failing:    Step{Name: "x", Command: []string{"nosuchbin-outpost-test"}},
			want:       Result{Outcome: Failed, ExitCode: -1, Reason: `step "x": exec: "nosuchbin-outpost-test": executable file not found in $PATH`, FailedStep: "x"},
			wantSystem: `==> step x: exec: "nosuchbin-outpost-test": executable file not found in $PATH`,
		},
		{
			name:       "killed by a signal it sent itself",
			failing:    Step{Name: "crash", Script: "kill -KILL $$"},
			want:       Result{Outcome: Failed, ExitCode: -1, Reason: `step "crash" was killed by signal SIGKILL`, FailedStep: "crash"},
			wantSystem: "==> step crash was killed by signal SIGKILL",
		},
		{
			name:       "unnamed step",
			failing:    Step{Script: "exit 1"},
			want:       Result{Outcome: Failed, ExitCode: 1, Reason: `step "#2" exited with code 1`, FailedStep: "#2"},
			wantSystem: "==> step #2 exited with code 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			marker := filepath.Join(t.TempDir(), "later-ran")
			res, rec := run(t, t.Context(), Spec{Steps: []Step{
				{Name: "first", Script: "echo ok"},
				tt.failing,
				{Name: "later", Command: []string{"touch", marker}},
			}})
			wantResult(t, res, tt.want)
			sys := rec.texts(System, "")
			if !slices.Contains(sys, tt.wantSystem) {
				t.Errorf("system lines %q lack %q", sys, tt.wantSystem)
			}
			if got := rec.texts(System, "later"); len(got) != 0 {
				t.Errorf("later step logged %q; it must not start", got)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("later step ran")
			}
		})
	}
}

func TestInvalidJobRunsNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		spec       Spec
		wantReason string
		wantStep   string
	}{
		{"unknown driver", Spec{Driver: "docker", Steps: []Step{{Name: "a", Script: "true"}}}, `invalid job: unknown driver "docker" (want "exec", "shell" or "noop")`, ""},
		{"command and script", Spec{Steps: []Step{{Name: "a", Command: []string{"true"}, Script: "true"}}}, `invalid job: step "a": both command and script are set`, "a"},
		{"neither", Spec{Steps: []Step{{Name: "a"}}}, `invalid job: step "a": neither command nor script is set`, "a"},
		{"empty program", Spec{Steps: []Step{{Name: "a", Command: []string{""}}}}, `invalid job: step "a": command has an empty program name`, "a"},
		{"exec driver refuses scripts", Spec{Driver: DriverExec, Steps: []Step{{Name: "a", Script: "true"}}}, `invalid job: step "a": the exec driver runs commands only, not scripts`, "a"},
		{"bad step env", Spec{Steps: []Step{{Name: "a", Script: "true", Env: map[string]string{"A=B": "c"}}}}, `invalid job: step "a": env: invalid variable name "A=B"`, "a"},
		{"bad job env", Spec{Env: map[string]string{"": "x"}, Steps: []Step{{Name: "a", Script: "true"}}}, `invalid job: job env: invalid variable name ""`, ""},
		{"missing dir", Spec{Dir: "/nonexistent/outpost", Steps: []Step{{Name: "a", Script: "true"}}}, "invalid job: working directory: stat /nonexistent/outpost: no such file or directory", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			marker := filepath.Join(t.TempDir(), "ran")
			// The valid first step proves validation happens before anything runs.
			tt.spec.Steps = append([]Step{{Name: "first", Command: []string{"touch", marker}}}, tt.spec.Steps...)
			res, _ := run(t, t.Context(), tt.spec)
			wantResult(t, res, Result{Outcome: Failed, ExitCode: -1, Reason: tt.wantReason, FailedStep: tt.wantStep})
			if _, err := os.Stat(marker); err == nil {
				t.Error("a step ran although the job is invalid")
			}
		})
	}
}

func TestEnvPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		base    []string
		job     map[string]string
		step    map[string]string
		wantOut string
	}{
		{"base only", []string{"A=base", "B=base", "C=base"}, nil, nil, "base base base"},
		{"job over base", []string{"A=base", "B=base", "C=base"}, map[string]string{"B": "job", "C": "job"}, nil, "base job job"},
		{"step over job over base", []string{"A=base", "B=base", "C=base"}, map[string]string{"B": "job", "C": "job"}, map[string]string{"C": "step"}, "base job step"},
		{"unset everywhere", nil, map[string]string{"A": "job"}, nil, "job unset unset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, rec := run(t, t.Context(), Spec{
				BaseEnv: append(slices.Clone(testEnv), tt.base...),
				Env:     tt.job,
				Steps:   []Step{{Name: "env", Script: `echo "${A-unset} ${B-unset} ${C-unset}"`, Env: tt.step}},
			})
			wantResult(t, res, Result{Outcome: Succeeded})
			if got := rec.texts(Stdout, "env"); !slices.Equal(got, []string{tt.wantOut}) {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
		})
	}
}

func TestProgramLookupUsesStepPath(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "outpost-test-tool"), "#!/bin/sh\necho \"tool ran with $1\"\n", 0o755)

	t.Run("step PATH", func(t *testing.T) {
		t.Parallel()
		// The tool is only on the step's PATH, never on this process's.
		res, rec := run(t, t.Context(), Spec{Steps: []Step{{
			Name:    "tool",
			Command: []string{"outpost-test-tool", "x"},
			Env:     map[string]string{"PATH": bin + ":/usr/bin:/bin"},
		}}})
		wantResult(t, res, Result{Outcome: Succeeded})
		if got := rec.texts(Stdout, "tool"); !slices.Equal(got, []string{"tool ran with x"}) {
			t.Errorf("stdout = %q", got)
		}
	})
	t.Run("default PATH when none given", func(t *testing.T) {
		t.Parallel()
		res, rec := run(t, t.Context(), Spec{BaseEnv: []string{}, Steps: []Step{
			{Name: "echo", Command: []string{"echo", "found"}},
			{Name: "path", Script: `echo "$PATH"`},
		}})
		wantResult(t, res, Result{Outcome: Succeeded})
		if got, want := rec.texts(Stdout, ""), []string{"found", defaultPath}; !slices.Equal(got, want) {
			t.Errorf("stdout = %q, want %q", got, want)
		}
	})
}

func TestWorkingDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "local.sh"), "#!/bin/sh\necho local\n", 0o755)
	res, rec := run(t, t.Context(), Spec{Dir: dir, Steps: []Step{
		{Name: "exec", Command: []string{"pwd"}},
		{Name: "shell", Script: "pwd"},
		{Name: "relative", Command: []string{"./local.sh"}},
	}})
	wantResult(t, res, Result{Outcome: Succeeded})
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := rec.texts(Stdout, "")
	if len(got) != 3 {
		t.Fatalf("stdout = %q, want 3 lines", got)
	}
	for _, line := range got[:2] {
		if p, _ := filepath.EvalSymlinks(line); p != real {
			t.Errorf("pwd printed %q, want %q", line, dir)
		}
	}
	if got[2] != "local" {
		t.Errorf("./local.sh printed %q", got[2])
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec Spec
		want Result
	}{
		{
			name: "step timeout",
			spec: Spec{Steps: []Step{
				{Name: "fast", Script: "true", Timeout: 5 * time.Second},
				{Name: "slow", Script: "sleep 100", Timeout: 200 * time.Millisecond},
			}},
			want: Result{Outcome: TimedOut, ExitCode: -1, Reason: `step "slow" timed out after 200ms`, FailedStep: "slow"},
		},
		{
			name: "job timeout counts from the start",
			spec: Spec{Timeout: 600 * time.Millisecond, Steps: []Step{
				{Name: "first", Script: "sleep 0.1"},
				{Name: "second", Script: "sleep 100", Timeout: time.Minute},
			}},
			want: Result{Outcome: TimedOut, ExitCode: -1, Reason: "job timed out after 600ms", FailedStep: "second"},
		},
		{
			name: "timeout escalates to SIGKILL",
			spec: Spec{AbortTimeout: 300 * time.Millisecond, Steps: []Step{
				{Name: "stubborn", Script: "trap '' TERM; sleep 100", Timeout: 200 * time.Millisecond},
			}},
			want: Result{Outcome: TimedOut, ExitCode: -1, Reason: `step "stubborn" timed out after 200ms (killed by SIGKILL after abort timeout 300ms)`, FailedStep: "stubborn"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			res, rec := run(t, t.Context(), tt.spec)
			wantResult(t, res, tt.want)
			// Far above the 200-300ms at stake, so only a hang (a step
			// never killed) trips it on a loaded machine.
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("Run took %v", d)
			}
			t.Logf("system: %q", rec.texts(System, ""))
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()

	t.Run("SIGTERM reaches the script", func(t *testing.T) {
		t.Parallel()
		marker := filepath.Join(t.TempDir(), "got-term")
		rec := &recorder{}
		ctx, _ := rec.cancelOn(t, "ready")
		res := runWith(t, ctx, Spec{Steps: []Step{{
			Name:   "trap",
			Script: `trap 'echo term > "$MARKER"; exit 0' TERM; echo ready; sleep 100 & wait`,
			Env:    map[string]string{"MARKER": marker},
		}}}, rec)
		wantResult(t, res, Result{Outcome: Canceled, ExitCode: 0, Reason: `canceled: step "trap" stopped by SIGTERM`, FailedStep: "trap"})
		if b, err := os.ReadFile(marker); err != nil || string(b) != "term\n" {
			t.Errorf("marker = %q, %v; the TERM trap did not run", b, err)
		}
		if sys := rec.texts(System, "trap"); !slices.Contains(sys, "==> canceled; sending SIGTERM to step trap") {
			t.Errorf("system lines %q lack the SIGTERM notice", sys)
		}
	})

	t.Run("ignored SIGTERM is followed by SIGKILL", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		ctx, canceledAt := rec.cancelOn(t, "ready")
		res := runWith(t, ctx, Spec{AbortTimeout: 300 * time.Millisecond, Steps: []Step{{
			Name:   "stubborn",
			Script: `trap '' TERM; echo ready; sleep 100 & wait`,
		}}}, rec)
		stoppedAfter := time.Since(canceledAt())
		wantResult(t, res, Result{Outcome: Canceled, ExitCode: -1, Reason: `canceled: step "stubborn" killed by SIGKILL after abort timeout 300ms`, FailedStep: "stubborn"})
		if stoppedAfter < 300*time.Millisecond || stoppedAfter > 5*time.Second {
			t.Errorf("stopped %v after cancel, want just over the 300ms abort timeout", stoppedAfter)
		}
	})

	t.Run("before the first step", func(t *testing.T) {
		t.Parallel()
		marker := filepath.Join(t.TempDir(), "ran")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		res, rec := run(t, ctx, Spec{Steps: []Step{{Name: "a", Command: []string{"touch", marker}}}})
		wantResult(t, res, Result{Outcome: Canceled, ExitCode: -1, Reason: "canceled before the job started"})
		if _, err := os.Stat(marker); err == nil {
			t.Error("step ran")
		}
		if l := rec.all(); len(l) != 0 {
			t.Errorf("logged %v", l)
		}
	})

	t.Run("later steps do not run", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		ctx, _ := rec.cancelOn(t, "last words")
		marker := filepath.Join(t.TempDir(), "ran")
		// The cancel lands while the first step is exiting anyway, so it may
		// or may not need stopping; either way the second must not start.
		res := runWith(t, ctx, Spec{Steps: []Step{
			{Name: "first", Script: "echo 'last words'"},
			{Name: "second", Command: []string{"touch", marker}},
		}}, rec)
		if res.Outcome != Canceled {
			t.Errorf("outcome = %s, want canceled", res.Outcome)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Error("second step ran after cancel")
		}
	})

	t.Run("between steps", func(t *testing.T) {
		t.Parallel()
		// Noop steps log synchronously from Run's goroutine, so canceling
		// from the first one's line lands exactly between the two steps.
		rec := &recorder{}
		ctx, _ := rec.cancelOn(t, "==> step build: make (noop driver, not run)")
		res := runWith(t, ctx, Spec{Driver: DriverNoop, Steps: []Step{
			{Name: "build", Command: []string{"make"}},
			{Name: "ship", Command: []string{"ship"}},
		}}, rec)
		wantResult(t, res, Result{Outcome: Canceled, ExitCode: -1, Reason: `canceled before step "ship" started`})
		if got := rec.texts(System, "ship"); len(got) != 0 {
			t.Errorf("ship logged %q", got)
		}
	})
}

// TestProcessGroupKilled checks that nothing the step started survives it
// being stopped, whether or not the step's shell itself honours SIGTERM.
func TestProcessGroupKilled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		want   Result
	}{
		{
			name:   "background child",
			script: `sleep 100 & echo $! > "$PIDFILE"; echo ready; wait`,
			want:   Result{Outcome: Canceled, ExitCode: -1, Reason: `canceled: step "s" stopped by SIGTERM`, FailedStep: "s"},
		},
		{
			// The shell dies on SIGTERM at once; its child ignores it and is
			// killed when the shell is gone, without waiting out the abort timeout.
			name:   "child ignoring SIGTERM",
			script: `(trap '' TERM; sleep 100) & echo $! > "$PIDFILE"; echo ready; wait`,
			want:   Result{Outcome: Canceled, ExitCode: -1, Reason: `canceled: step "s" stopped by SIGTERM`, FailedStep: "s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pidfile := filepath.Join(t.TempDir(), "pid")
			rec := &recorder{}
			ctx, _ := rec.cancelOn(t, "ready")
			start := time.Now()
			res := runWith(t, ctx, Spec{AbortTimeout: time.Minute, Steps: []Step{{
				Name: "s", Script: tt.script, Env: map[string]string{"PIDFILE": pidfile},
			}}}, rec)
			wantResult(t, res, tt.want)
			// The abort timeout is a minute: finishing well before it is
			// what shows it was not needed.
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("Run took %v; the abort timeout should not have been needed", d)
			}
			pid := readPID(t, pidfile)
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
			waitGone(t, pid)
		})
	}
}

// TestEscapedChildDoesNotHangRun starts a process in a new session that keeps
// the step's stdout open after the step exits: Run must stop reading after a
// bounded time instead of waiting for it.
func TestEscapedChildDoesNotHangRun(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	res, rec := run(t, t.Context(), Spec{Steps: []Step{{
		Name:   "daemon",
		Script: `setsid sleep 100 & echo $! > "$PIDFILE"; echo started`,
		Env:    map[string]string{"PIDFILE": pidfile},
	}}})
	pid := readPID(t, pidfile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	wantResult(t, res, Result{Outcome: Succeeded})
	// The daemon sleeps 100s: returning well before shows Run stopped
	// reading its pipes instead of waiting for it.
	if d := time.Since(start); d > 40*time.Second {
		t.Errorf("Run took %v", d)
	}
	if got := rec.texts(Stdout, "daemon"); !slices.Equal(got, []string{"started"}) {
		t.Errorf("stdout = %q", got)
	}
	want := "==> step daemon exited but a background process still holds its output open; no longer reading it"
	if sys := rec.texts(System, "daemon"); !slices.Contains(sys, want) {
		t.Errorf("system lines %q lack %q", sys, want)
	}
}

func TestOutputFraming(t *testing.T) {
	t.Parallel()
	res, rec := run(t, t.Context(), Spec{Steps: []Step{
		{Name: "long", Script: `head -c 150000 /dev/zero | tr '\0' a; echo; printf 'no newline'`},
		{Name: "crlf", Command: []string{"printf", `dos\r\nline\r\n`}},
	}})
	wantResult(t, res, Result{Outcome: Succeeded})
	got := rec.texts(Stdout, "long")
	var sizes []string
	for _, l := range got {
		if strings.Trim(l, "a") == "" {
			sizes = append(sizes, strconv.Itoa(len(l)))
		} else {
			sizes = append(sizes, l)
		}
	}
	if want := []string{"65536", "65536", "18928", "no newline"}; !slices.Equal(sizes, want) {
		t.Errorf("long step lines = %q, want %q", sizes, want)
	}
	// The split is marked, once, after the pieces of the split line.
	want := "==> step long: the last 3 stdout lines are one line of 150000 bytes, split at the 64 KiB limit of a log line"
	sys := rec.texts(System, "long")
	marks := 0
	for _, l := range sys {
		if strings.Contains(l, "split at") {
			marks++
		}
	}
	if !slices.Contains(sys, want) || marks != 1 {
		t.Errorf("system lines %q: want %q once", sys, want)
	}
	if got, want := rec.texts(Stdout, "crlf"), []string{"dos", "line"}; !slices.Equal(got, want) {
		t.Errorf("crlf step lines = %q, want %q", got, want)
	}
}

func TestNoopDriver(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	res, rec := run(t, t.Context(), Spec{
		Driver: DriverNoop,
		Dir:    "/nonexistent/outpost", // nothing runs, so nothing needs it
		Steps: []Step{
			{Name: "build", Command: []string{"nosuchbin-outpost-test", "x"}},
			{Name: "ship", Script: "touch " + marker + "; exit 1"},
		},
	})
	wantResult(t, res, Result{Outcome: Succeeded})
	var got []string
	for _, l := range rec.all() {
		got = append(got, fmt.Sprintf("%s/%s: %s", l.Stream, l.Step, l.Text))
	}
	want := []string{
		"system/build: ==> step build: nosuchbin-outpost-test x (noop driver, not run)",
		"system/ship: ==> step ship: touch " + marker + "; exit 1 (noop driver, not run)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("log = %q, want %q", got, want)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("noop driver ran a script")
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	return pid
}

// waitGone waits until pid no longer runs. A killed orphan may linger as a
// zombie until init reaps it, which counts as gone.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	testwait.For(t, 5*time.Second, func() (bool, error) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true, nil
		}
		// The state follows the parenthesised command name.
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i > 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
			return true, nil
		}
		return false, fmt.Errorf("process %d still running: %s", pid, stat)
	})
}

// hasExited asks the kernel, so a stop that comes just after the step
// exited finds it gone even before the watching goroutine has run.
func TestHasExited(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{{[]string{"true"}, true}, {[]string{"sleep", "30"}, false}} {
		cmd := exec.Command(c.args[0], c.args[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := watch(cmd)
		if c.want {
			<-p.exited
		} else {
			time.Sleep(50 * time.Millisecond)
		}
		if got := p.kernelSaysExited(); got != c.want {
			t.Errorf("%v: the kernel says exited = %v, want %v", c.args, got, c.want)
		}
		_ = cmd.Process.Kill()
		_, _ = p.reap()
	}
}
