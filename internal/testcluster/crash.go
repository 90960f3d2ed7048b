package testcluster

import (
	"fmt"
	"syscall"
	"time"
)

// Crash ends the process with SIGKILL, as the OOM killer or a crash would,
// and waits for it to exit: unlike Kill, it spares what the process
// started in process groups of its own (an agent's jobs, a runner's
// watchdog), so a test can see what becomes of them.
func (p *Process) Crash() {
	p.t.Helper()
	if err := p.TryCrash(); err != nil {
		p.t.Errorf("testcluster: %v", err)
	}
}

// TryCrash is Crash that returns its error instead of failing the test,
// for use off the test's goroutine.
func (p *Process) TryCrash() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("crash: %w", err)
	}
	if err := p.Wait(30 * time.Second); err != nil {
		return fmt.Errorf("crash: %w", err)
	}
	p.logf("crashed %s with SIGKILL of its process group alone", p.name)
	return nil
}
