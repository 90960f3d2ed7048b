package executor

import (
	"context"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// drainTimeout bounds how long Run keeps reading a step's output after the
// step's process has exited. Output still in the pipes arrives well within
// it; only a background process that inherited the pipes can hold them open
// longer, and waiting for that one could mean waiting forever.
const drainTimeout = 2 * time.Second

// procSpec is one process for runProcess to start and supervise.
type procSpec struct {
	path string
	args []string
	env  []string
	dir  string
	// abortTimeout is asked for the SIGTERM → SIGKILL grace when the
	// process is stopped: the reason it is stopped can shorten it.
	abortTimeout func() time.Duration
	// emit receives output lines, from one goroutine per stream.
	emit func(Stream, string)
	// split, if set, is told after the pieces of a line longer than
	// MaxLineBytes have been emitted (see scanLines).
	split func(stream Stream, pieces, bytes int)
	// onSignal is called just before the process group is sent sig;
	// grace is the abort timeout in force.
	onSignal func(sig syscall.Signal, grace time.Duration)
	// attr is how the process starts: its own process group, or for an
	// isolated job its own session and maybe another user.
	attr *syscall.SysProcAttr
	// start starts cmd; nil means cmd.Start. A job container starts the
	// process inside itself.
	start func(cmd *exec.Cmd) error
	// exited, if set, is called once the process has exited and been
	// reaped, before the rest of its output is read; stopped says whether
	// it was signalled. A job container kills what the step left running
	// here when the step ends the job, so that no background process
	// holds the output open.
	exited func(pid int, state *os.ProcessState, stopped bool)
	// contained says something else (a job container) kills what is left
	// of the process group once a stopped leader has exited.
	contained bool
}

// stopKind records whether, and how hard, runProcess had to stop the process.
type stopKind int

const (
	stopNone stopKind = iota // it exited on its own
	stopTerm                 // it exited after SIGTERM
	stopKill                 // it outlived the abort timeout and got SIGKILL
)

type procResult struct {
	startErr  error            // set when the process never ran
	state     *os.ProcessState // set otherwise
	stop      stopKind
	grace     time.Duration // the abort timeout in force when it was stopped
	abandoned bool          // its output pipes were still open drainTimeout after it exited
}

// runProcess starts p in a new process group, streams its output, and stops
// the group when ctx ends. It returns once the process has exited and its
// output has been read (or abandoned after drainTimeout).
func runProcess(ctx context.Context, p procSpec) procResult {
	// Our own pipes instead of cmd.StdoutPipe: exec.Cmd then has no copying
	// goroutines of its own, so Wait returns as soon as the process exits and
	// the drain bound below is entirely ours.
	outR, outW, err := os.Pipe()
	if err != nil {
		return procResult{startErr: err}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return procResult{startErr: err}
	}

	cmd := &exec.Cmd{
		Path:   p.path,
		Args:   p.args,
		Env:    p.env,
		Dir:    p.dir,
		Stdout: outW,
		Stderr: errW,
		// A group of its own (see Isolation.sysProcAttr) lets one signal
		// reach everything the step started, and keeps terminal signals
		// aimed at us away from it.
		SysProcAttr: p.attr,
	}
	if p.start != nil {
		err = p.start(cmd)
	} else {
		err = cmd.Start()
	}
	// The child has its own copies now; ours must go or EOF never comes.
	outW.Close()
	errW.Close()
	if err != nil {
		if cmd.Process != nil {
			// Started, but not where it belongs (see startInV1).
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		outR.Close()
		errR.Close()
		return procResult{startErr: err}
	}

	var readers sync.WaitGroup
	scan := func(r io.Reader, stream Stream) {
		var split func(int, int)
		if p.split != nil {
			split = func(pieces, bytes int) { p.split(stream, pieces, bytes) }
		}
		_ = scanLines(r, func(s string) { p.emit(stream, s) }, split)
	}
	readers.Go(func() { scan(outR, Stdout) })
	readers.Go(func() { scan(errR, Stderr) })
	readersDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readersDone)
	}()

	proc := watch(cmd)
	var res procResult
	select {
	case <-proc.exited:
	case <-ctx.Done():
		res.stop, res.grace = stopGroup(proc, p)
	}
	res.state, _ = proc.reap() // the exit status is all we need from Wait
	if p.exited != nil {
		p.exited(cmd.Process.Pid, res.state, res.stop != stopNone)
	}
	res.abandoned = drain(readersDone, drainTimeout, outR, errR)
	return res
}

// stopGroup ends the process group: SIGTERM first, SIGKILL when the leader has
// not exited within the abort timeout. Once the leader is gone, whatever is
// left of its group is killed at once (by the job's container when there is
// one): the step is over and nothing may outlive a cancellation.
func stopGroup(proc *process, p procSpec) (stopKind, time.Duration) {
	if proc.hasExited() {
		return stopNone, 0 // it finished on its own just as ctx ended
	}
	grace := p.abortTimeout()
	p.onSignal(syscall.SIGTERM, grace)
	proc.signalGroup(syscall.SIGTERM)

	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-proc.exited:
		if !p.contained {
			proc.signalGroup(syscall.SIGKILL)
		}
		return stopTerm, grace
	case <-t.C:
		p.onSignal(syscall.SIGKILL, grace)
		proc.signalGroup(syscall.SIGKILL)
		<-proc.exited
		return stopKill, grace
	}
}

// drain waits for the output readers to finish, for at most timeout, then
// cuts them off and closes the read ends. It reports whether it had to cut.
func drain(done <-chan struct{}, timeout time.Duration, pipes ...*os.File) (abandoned bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		abandoned = true
		for _, f := range pipes {
			// A read deadline wakes a blocked reader (os.Pipe ends are in
			// the poller), which then flushes its partial line and returns.
			if f.SetReadDeadline(time.Now()) != nil {
				f.Close()
			}
		}
		<-done
	}
	for _, f := range pipes {
		f.Close()
	}
	return abandoned
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return sig.String()
}
