package testcluster

import (
	"syscall"
	"time"
)

// Crash ends the process with SIGKILL, as the OOM killer or a crash would,
// and waits for it to exit: unlike Kill, it spares what the process
// started in process groups of its own (an agent's jobs, a runner's
// watchdog), so a test can see what becomes of them.
func (p *Process) Crash() {
	p.t.Helper()
	if err := p.signal(syscall.SIGKILL); err != nil {
		p.t.Errorf("testcluster: crash: %v", err)
		return
	}
	if err := p.Wait(30 * time.Second); err != nil {
		p.t.Errorf("testcluster: crash: %v", err)
	}
	p.logf("crashed %s with SIGKILL of its process group alone", p.name)
}
