package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// DefaultAbortTimeout is the SIGTERM → SIGKILL grace used when
// Spec.AbortTimeout is not positive.
const DefaultAbortTimeout = 30 * time.Second

// Driver names accepted in Spec.Driver.
const (
	DriverAuto  = ""
	DriverExec  = "exec"
	DriverShell = "shell"
	DriverNoop  = "noop"
)

// Step is one unit of a job. Exactly one of Command and Script must be set.
type Step struct {
	Name string
	// Command is an argv run without a shell. Command[0] is looked up in the
	// PATH of the step's own environment when it contains no slash.
	Command []string
	// Script is run as /bin/sh -c Script.
	Script string
	// Env overrides Spec.Env and Spec.BaseEnv for this step.
	Env map[string]string
	// Timeout bounds this step; 0 means none (the job timeout still applies).
	Timeout time.Duration
}

// Spec describes one job run.
type Spec struct {
	// JobID identifies the job; it is informational only.
	JobID string
	Steps []Step
	// Env is the job-level environment, overridden by each step's Env.
	Env map[string]string
	// BaseEnv is the "K=V" environment processes start from, such as
	// os.Environ() or a deliberately clean list. If the merged environment
	// has no PATH, a conventional default is used both for finding
	// Command[0] and in the process's environment.
	BaseEnv []string
	// Dir is the working directory of every step. It must exist; "" means the
	// caller's working directory. The noop driver does not check it.
	Dir string
	// Timeout bounds the whole job, counted from the call to Run; 0 means none.
	Timeout time.Duration
	// AbortTimeout is how long a stopped step gets between SIGTERM and
	// SIGKILL; 0 (or negative) means DefaultAbortTimeout.
	AbortTimeout time.Duration
	// Driver is one of DriverAuto, DriverExec, DriverShell or DriverNoop.
	Driver string
	// Isolation confines an on_demand job; nil runs steps in a process
	// group of their own, as the runner's user.
	Isolation *Isolation
	// Host contains the job: its processes live in a container of their
	// own (a cgroup where the host allows it), and all of them are killed
	// when the job ends. nil runs the job without one, as before: a
	// background process a step leaves running survives the job.
	Host *Host
	// Key names this execution's container (its cgroup directory). It
	// must be unique among the Host's executions, such as
	// "j-0123456789abcdef-42" (job id and attempt): a container left
	// with the same key is taken for a dead execution's, and emptied.
	// "" lets the Host number executions itself.
	Key string
}

// Stream says where a log line came from.
type Stream string

const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
	// System lines are written by the executor itself (step headers, exit
	// codes, stop notices) and start with "==> ".
	System Stream = "system"
)

// LogLine is one line of output, without its line terminator.
type LogLine struct {
	Time   time.Time
	Stream Stream
	// Step is the name of the step the line belongs to; "" for job-level
	// system lines.
	Step string
	Text string
}

// Outcome is how a job ended.
type Outcome string

const (
	Succeeded Outcome = "succeeded"
	Failed    Outcome = "failed"
	TimedOut  Outcome = "timed_out"
	Canceled  Outcome = "canceled"
)

// Result is the outcome of Run.
type Result struct {
	Outcome Outcome
	// ExitCode is the exit status of the last step that ran: 0 on success,
	// the step's code when it exited on its own, and -1 when there is no exit
	// status (killed by a signal, failed to start, or no step ran).
	ExitCode int
	// Reason says in words why the job did not succeed; "" on success.
	Reason string
	// FailedStep names the step that failed, timed out or was stopped; "" on
	// success or when the job ended between steps.
	FailedStep string
	// PeakMemoryBytes and CPUTime are the job's peak memory use and the
	// CPU time of all its processes, from its container (without cgroups
	// they come from wait4: the peak of its largest process, and the CPU
	// time of the processes its steps waited for). Zero when unknown, and
	// always without a Host.
	PeakMemoryBytes uint64
	CPUTime         time.Duration
	// KilledLeftovers is how many processes the job left running that
	// were killed when it ended (with a Host).
	KilledLeftovers int
}

// Run runs spec's steps in order, stopping at the first that does not
// succeed, and reports how the job ended. Cancelling ctx cancels the job: the
// running step is stopped (SIGTERM, then SIGKILL after the abort timeout) and
// the outcome is Canceled. A cancellation cause (context.WithCancelCause)
// with an AbortTimeout method, such as Fenced, can shorten the abort
// timeout. Run returns only after the running step's process has exited and
// its output has been read, and with a Host, after every process of the job
// is gone.
//
// log receives every output line and the executor's own system lines. It is
// called synchronously from the goroutines reading the step's stdout and
// stderr and from Run's own goroutine, so calls may be concurrent with each
// other; lines of one stream arrive in order. A slow log slows the step down
// (its pipes fill up), so callers should be fast or copy the line and hand it
// off. log may be nil.
func Run(ctx context.Context, spec Spec, log func(LogLine)) Result {
	if log == nil {
		log = func(LogLine) {}
	}
	if ctx.Err() != nil {
		reason := "canceled before the job started"
		if r := causeReason(ctx); r != "" {
			reason = r + " before the job started"
		}
		return Result{Outcome: Canceled, ExitCode: -1, Reason: reason}
	}

	steps, err := planJob(spec)
	if err != nil {
		var pe *planError
		failed := ""
		if errors.As(err, &pe) {
			failed = pe.step
		}
		reason := "invalid job: " + err.Error()
		log(LogLine{Time: time.Now(), Stream: System, Step: failed, Text: "==> " + reason})
		return Result{Outcome: Failed, ExitCode: -1, Reason: reason, FailedStep: failed}
	}

	j := &job{spec: spec, log: log, abortTimeout: spec.AbortTimeout, iso: spec.Isolation}
	if j.abortTimeout <= 0 {
		j.abortTimeout = DefaultAbortTimeout
	}
	if err := j.contain(); err != nil {
		reason := "containing the job: " + err.Error()
		j.system("", "%s", reason)
		return Result{Outcome: Failed, ExitCode: -1, Reason: reason}
	}
	return j.end(j.run(ctx, steps))
}

// run runs the steps; Run wraps it so that every way out ends the
// job's container.
func (j *job) run(ctx context.Context, steps []plannedStep) Result {
	spec := j.spec

	// The job deadline is fixed here, at Run start, so time spent in earlier
	// steps counts against it.
	jobCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		jobCtx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, &timeoutCause{job: true, after: spec.Timeout})
		defer cancel()
	}

	last := Result{Outcome: Succeeded}
	for i, s := range steps {
		if jobCtx.Err() != nil {
			return j.endedBetweenSteps(jobCtx, s.name)
		}
		last = j.runStep(jobCtx, s, i == len(steps)-1)
		if last.Outcome != Succeeded {
			return last
		}
	}
	return last
}

// job carries what every step of one Run needs.
type job struct {
	spec         Spec
	log          func(LogLine)
	abortTimeout time.Duration
	// iso is spec.Isolation, or a copy with the memory limit moved to
	// RLIMIT_AS when no cgroup can take it.
	iso *Isolation
	ctr *jobContainer // with a Host
	// jobEnv is set for every step last, over the step's own env.
	jobEnv map[string]string
}

// contain makes the job's container when it has a Host, and checks that
// its limits can be applied.
func (j *job) contain() error {
	var lim Limits
	if j.iso != nil {
		lim = j.iso.Limits
	}
	h := j.spec.Host
	if j.spec.Driver == DriverNoop {
		return nil // nothing runs, nothing to contain or limit
	}
	if h == nil {
		if lim.CPUs > 0 {
			return fmt.Errorf("the job asks for cpus = %g, a CPU quota, which needs job containment (an executor Host) that this executor has not got; drop the cpus limit", lim.CPUs)
		}
		if lim.MemoryBytes > 0 {
			j.memoryAsRlimit()
		}
		return nil
	}
	key, err := h.checkKey(j.spec.Key)
	if err != nil {
		return err
	}
	// The process sweep finds the job's processes by this variable, so a
	// step's env must not change it.
	id := j.spec.Env["OUTPOST_JOB_ID"]
	if id == "" {
		id = j.spec.JobID
	}
	if id == "" {
		// Unique to this Host too: the sweep must never take another
		// Host's job (in the same process) for this one.
		id = h.name + "." + key
	}
	j.jobEnv = map[string]string{"OUTPOST_JOB_ID": id}
	if j.ctr, err = h.contain(key, id, lim, j.iso); err != nil {
		return err
	}
	if j.ctr.memoryAsRlimit() {
		j.memoryAsRlimit()
	}
	return nil
}

// memoryAsRlimit applies the job's memory limit as RLIMIT_AS, the
// nearest an rlimit comes.
func (j *job) memoryAsRlimit() {
	iso := *j.iso
	if m := iso.Limits.MemoryBytes; iso.Limits.AddressSpace == 0 || m < iso.Limits.AddressSpace {
		iso.Limits.AddressSpace = m
	}
	j.iso = &iso
}

// end kills what is left of the job, removes its container and adds
// what the container measured to res.
func (j *job) end(res Result) Result {
	c := j.ctr
	if c == nil {
		return res
	}
	n := c.kill()
	res.CPUTime, res.PeakMemoryBytes = c.usage()
	ooms := c.oomKills()
	c.remove()
	res.KilledLeftovers = n
	if n > 0 {
		j.system("", "killed %d %s left running by the job", n, plural(n, "process", "processes"))
	}
	if ooms > 0 && j.iso != nil {
		limit := formatBytes(j.iso.Limits.MemoryBytes)
		j.system("", "the job reached its memory limit of %s: the kernel killed %d %s", limit, ooms, plural(int(ooms), "process", "processes"))
		if res.Outcome == Failed {
			res.Reason += " (memory limit of " + limit + " reached)"
		}
	}
	return res
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// formatBytes shows a size the way a profile would write it.
func formatBytes(n uint64) string {
	for _, u := range []struct {
		size uint64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatUint(n/u.size, 10) + " " + u.name
		}
	}
	return strconv.FormatUint(n, 10) + " bytes"
}

// causeReason is what a cancellation's cause says beyond "canceled": ""
// for a plain cancel or a deadline.
func causeReason(ctx context.Context) string {
	cause := context.Cause(ctx)
	var tc *timeoutCause
	if cause == nil || errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) || errors.As(cause, &tc) {
		return ""
	}
	return cause.Error()
}

// graceFor is the abort timeout for a step stopped by ctx: the job's,
// unless the cause of the cancellation asks for less.
func (j *job) graceFor(ctx context.Context) time.Duration {
	g := j.abortTimeout
	var short interface{ AbortTimeout() time.Duration }
	if errors.As(context.Cause(ctx), &short) {
		if d := short.AbortTimeout(); d >= 0 && d < g {
			g = d
		}
	}
	return g
}

func (j *job) system(step, format string, args ...any) {
	j.log(LogLine{Time: time.Now(), Stream: System, Step: step, Text: "==> " + fmt.Sprintf(format, args...)})
}

// timeoutCause is the context cause of a job or step deadline, so that after
// a step is stopped Run can tell a timeout from a cancellation by its caller.
type timeoutCause struct {
	job   bool
	after time.Duration
}

func (c *timeoutCause) Error() string {
	if c.job {
		return fmt.Sprintf("job timed out after %v", c.after)
	}
	return fmt.Sprintf("step timed out after %v", c.after)
}

// endedBetweenSteps reports a job whose context ended after one step finished
// and before the next (next) started.
func (j *job) endedBetweenSteps(ctx context.Context, next string) Result {
	var tc *timeoutCause
	if errors.As(context.Cause(ctx), &tc) {
		reason := tc.Error()
		j.system("", "%s before step %s started", reason, next)
		return Result{Outcome: TimedOut, ExitCode: -1, Reason: reason}
	}
	what := "canceled"
	if r := causeReason(ctx); r != "" {
		what = r
	}
	reason := fmt.Sprintf("%s before step %q started", what, next)
	j.system("", "%s before step %s started", what, next)
	return Result{Outcome: Canceled, ExitCode: -1, Reason: reason}
}

// runStep runs one step; last says no step follows it.
func (j *job) runStep(jobCtx context.Context, s plannedStep, last bool) Result {
	if s.noop {
		j.system(s.name, "step %s: %s (noop driver, not run)", s.name, s.display)
		return Result{Outcome: Succeeded}
	}

	ctx := jobCtx
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(jobCtx, s.Timeout, &timeoutCause{after: s.Timeout})
		defer cancel()
	}

	j.system(s.name, "step %s: %s", s.name, s.display)
	env, pathEnv := mergeEnv(j.spec.BaseEnv, j.spec.Env, s.Env, j.jobEnv)
	path, argv, err := s.driver.command(s.Step, pathEnv, j.spec.Dir)
	if err == nil {
		var cgroups []string
		if j.ctr != nil {
			cgroups = j.ctr.launchDirs()
		}
		path, argv, err = j.iso.wrap(path, argv, cgroups)
	}
	if err != nil {
		return j.fail(s.name, Failed, -1, "step %s: %v", err)
	}

	p := procSpec{
		path:         path,
		args:         argv,
		env:          env,
		dir:          j.spec.Dir,
		abortTimeout: func() time.Duration { return j.graceFor(ctx) },
		emit: func(stream Stream, text string) {
			j.log(LogLine{Time: time.Now(), Stream: stream, Step: s.name, Text: text})
		},
		split: func(stream Stream, pieces, bytes int) {
			j.system(s.name, "step %s: the last %d %s lines are one line of %d bytes, split at the %d KiB limit of a log line",
				s.name, pieces, stream, bytes, MaxLineBytes>>10)
		},
		onSignal: func(sig syscall.Signal, grace time.Duration) { j.noteSignal(ctx, s.name, sig, grace) },
		attr:     j.iso.sysProcAttr(),
	}
	if c := j.ctr; c != nil {
		p.start, p.contained = c.start, true
		p.exited = func(pid int, state *os.ProcessState, stopped bool) {
			// A step that ends the job takes everything with it now,
			// before its output is drained, so that a background process
			// holding the pipes open cannot hold up the job's end.
			ending := last || stopped || state == nil || !state.Success() || ctx.Err() != nil
			c.stepEnded(pid, state, ending)
			if ending {
				c.kill()
			}
		}
	}
	pr := runProcess(ctx, p)
	if pr.abandoned {
		j.system(s.name, "step %s exited but a background process still holds its output open; no longer reading it", s.name)
	}
	return j.classify(ctx, s.name, pr)
}

// noteSignal tells the log reader why a step is being signalled, so a job that
// sits in its abort timeout does not look hung.
func (j *job) noteSignal(ctx context.Context, step string, sig syscall.Signal, grace time.Duration) {
	if sig == syscall.SIGKILL {
		j.system(step, "step %s still running %v after SIGTERM; sending SIGKILL", step, grace)
		return
	}
	var tc *timeoutCause
	switch {
	case !errors.As(context.Cause(ctx), &tc):
		what := "canceled"
		if r := causeReason(ctx); r != "" {
			what = r
		}
		j.system(step, "%s; sending %s to step %s", what, signalName(sig), step)
	case tc.job:
		j.system(step, "%v; sending %s to step %s", tc, signalName(sig), step)
	default:
		j.system(step, "step %s timed out after %v; sending %s", step, tc.after, signalName(sig))
	}
}

// classify turns how a step's process ended into the job's Result.
func (j *job) classify(ctx context.Context, name string, pr procResult) Result {
	if pr.startErr != nil {
		return j.fail(name, Failed, -1, "step %s: %v", pr.startErr)
	}
	if pr.state == nil {
		// Something else in this process reaped it.
		return j.fail(name, Failed, -1, "step %s ended, but its exit status was lost")
	}

	code := -1
	var termSig syscall.Signal
	if ws, ok := pr.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		termSig = ws.Signal()
	} else {
		code = pr.state.ExitCode()
	}

	if pr.stop != stopNone {
		how := "stopped by SIGTERM"
		if pr.stop == stopKill {
			how = fmt.Sprintf("killed by SIGKILL after abort timeout %v", pr.grace)
		}
		var tc *timeoutCause
		if errors.As(context.Cause(ctx), &tc) {
			detail := ""
			if pr.stop == stopKill {
				detail = " (" + how + ")"
			}
			if tc.job {
				reason := tc.Error() + detail
				j.system(name, "%s while running step %s", reason, name)
				return Result{Outcome: TimedOut, ExitCode: code, Reason: reason, FailedStep: name}
			}
			return j.fail(name, TimedOut, code, "step %s timed out after %v%s", tc.after, detail)
		}
		if r := causeReason(ctx); r != "" {
			return j.fail(name, Canceled, code, "%[2]s: step %[1]s %[3]s", r, how)
		}
		return j.fail(name, Canceled, code, "canceled: step %s %s", how)
	}

	switch {
	case termSig != 0:
		return j.fail(name, Failed, -1, "step %s was killed by signal %s", signalName(termSig))
	case code != 0:
		return j.fail(name, Failed, code, "step %s exited with code %d", code)
	}
	return Result{Outcome: Succeeded, ExitCode: 0}
}

// fail builds a non-success Result and logs it. format's first verb is the
// step name: quoted in Reason, where it sits among other prose, and bare in
// the log line, where it matches the step header.
func (j *job) fail(name string, outcome Outcome, code int, format string, args ...any) Result {
	j.system(name, format, append([]any{name}, args...)...)
	return Result{
		Outcome:    outcome,
		ExitCode:   code,
		Reason:     fmt.Sprintf(format, append([]any{strconv.Quote(name)}, args...)...),
		FailedStep: name,
	}
}
