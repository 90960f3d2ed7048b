package executor

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// process tracks a started step's group leader.
//
// On Linux the leader's exit is observed with waitid(WNOWAIT), which leaves
// it a zombie until reap. A zombie still belongs to its process group, so
// the group id cannot be reused by an unrelated process while signalGroup
// may still be called: signalling -pgid can only ever reach the step's own
// processes.
type process struct {
	cmd    *exec.Cmd
	pgid   int
	exited chan struct{} // closed when the leader has exited (not yet reaped)
}

func watch(cmd *exec.Cmd) *process {
	p := &process{cmd: cmd, pgid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, p.pgid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				// On any other error reap's Wait reports what happened.
				return
			}
		}
	}()
	return p
}

// hasExited reports whether the leader has exited, asking the kernel rather
// than waiting for the watching goroutine: on a loaded machine that one
// may learn of the exit well after it happened.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	return p.kernelSaysExited()
}

func (p *process) kernelSaysExited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.pgid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// With WNOHANG and nothing to report, Linux zeroes the siginfo; a
	// child that has exited reports SIGCHLD.
	return err == nil && info.Signo == int32(unix.SIGCHLD)
}

// signalGroup signals every process in the leader's group. It must not be
// called after reap.
func (p *process) signalGroup(sig syscall.Signal) {
	// ESRCH cannot happen while the leader is unreaped; other errors leave
	// nothing to do but wait for the exit we are already waiting for.
	_ = unix.Kill(-p.pgid, sig)
}

// reap collects the leader's exit status once it has exited.
func (p *process) reap() (*os.ProcessState, error) {
	<-p.exited
	err := p.cmd.Wait()
	return p.cmd.ProcessState, err
}
