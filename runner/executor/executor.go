package executor

import (
	"context"
	"errors"
	"fmt"
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
}

// Run runs spec's steps in order, stopping at the first that does not
// succeed, and reports how the job ended. Cancelling ctx cancels the job: the
// running step is stopped (SIGTERM, then SIGKILL after the abort timeout) and
// the outcome is Canceled. Run returns only after the running step's process
// has exited and its output has been read.
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
		return Result{Outcome: Canceled, ExitCode: -1, Reason: "canceled before the job started"}
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

	j := &job{spec: spec, log: log, abortTimeout: spec.AbortTimeout}
	if j.abortTimeout <= 0 {
		j.abortTimeout = DefaultAbortTimeout
	}

	// The job deadline is fixed here, at Run start, so time spent in earlier
	// steps counts against it.
	jobCtx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		jobCtx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, &timeoutCause{job: true, after: spec.Timeout})
		defer cancel()
	}

	last := Result{Outcome: Succeeded}
	for _, s := range steps {
		if jobCtx.Err() != nil {
			return j.endedBetweenSteps(jobCtx, s.name)
		}
		last = j.runStep(jobCtx, s)
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
	reason := fmt.Sprintf("canceled before step %q started", next)
	j.system("", "canceled before step %s started", next)
	return Result{Outcome: Canceled, ExitCode: -1, Reason: reason}
}

func (j *job) runStep(jobCtx context.Context, s plannedStep) Result {
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
	env, pathEnv := mergeEnv(j.spec.BaseEnv, j.spec.Env, s.Env)
	path, argv, err := s.driver.command(s.Step, pathEnv, j.spec.Dir)
	if err == nil {
		path, argv, err = j.spec.Isolation.wrap(path, argv)
	}
	if err != nil {
		return j.fail(s.name, Failed, -1, "step %s: %v", err)
	}

	pr := runProcess(ctx, procSpec{
		path:         path,
		args:         argv,
		env:          env,
		dir:          j.spec.Dir,
		abortTimeout: j.abortTimeout,
		emit: func(stream Stream, text string) {
			j.log(LogLine{Time: time.Now(), Stream: stream, Step: s.name, Text: text})
		},
		onSignal: func(sig syscall.Signal) { j.noteSignal(ctx, s.name, sig) },
		attr:     j.spec.Isolation.sysProcAttr(),
	})
	if pr.abandoned {
		j.system(s.name, "step %s exited but a background process still holds its output open; no longer reading it", s.name)
	}
	return j.classify(ctx, s.name, pr)
}

// noteSignal tells the log reader why a step is being signalled, so a job that
// sits in its abort timeout does not look hung.
func (j *job) noteSignal(ctx context.Context, step string, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		j.system(step, "step %s still running %v after SIGTERM; sending SIGKILL", step, j.abortTimeout)
		return
	}
	var tc *timeoutCause
	switch {
	case !errors.As(context.Cause(ctx), &tc):
		j.system(step, "canceled; sending %s to step %s", signalName(sig), step)
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
			how = fmt.Sprintf("killed by SIGKILL after abort timeout %v", j.abortTimeout)
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
