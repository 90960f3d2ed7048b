//go:build unix && !linux

package executor

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// process tracks a started step's group leader.
//
// Without waitid(WNOWAIT) the leader is reaped as soon as it exits, after
// which its group id may in principle be reused; signalGroup therefore does
// nothing once the leader is gone, leaving any stragglers in the group alone.
type process struct {
	cmd     *exec.Cmd
	pgid    int
	exited  chan struct{}
	waitErr error
}

func watch(cmd *exec.Cmd) *process {
	p := &process{cmd: cmd, pgid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *process) signalGroup(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
		_ = unix.Kill(-p.pgid, sig)
	}
}

func (p *process) reap() (*os.ProcessState, error) {
	<-p.exited
	return p.cmd.ProcessState, p.waitErr
}
