//go:build unix && !linux

package executor

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

// Job containment needs Linux (cgroups, or /proc and a child subreaper);
// elsewhere NewHost fails and Specs run without a Host.

type hostOS struct{}

func (h *Host) probe(Containment) error {
	return errors.New("job containment needs Linux; run without a Host here")
}

func (h *Host) closeOS() error { return nil }

type jobContainer struct{}

func (h *Host) contain(string, string, Limits, *Isolation) (*jobContainer, error) {
	return nil, errors.New("job containment needs Linux")
}

func (c *jobContainer) start(cmd *exec.Cmd) error             { return cmd.Start() }
func (c *jobContainer) launchDirs() []string                  { return nil }
func (c *jobContainer) stepEnded(int, *os.ProcessState, bool) {}
func (c *jobContainer) kill() int                             { return 0 }
func (c *jobContainer) usage() (time.Duration, uint64)        { return 0, 0 }
func (c *jobContainer) oomKills() uint64                      { return 0 }
func (c *jobContainer) remove()                               {}
func (c *jobContainer) memoryAsRlimit() bool                  { return false }

// KillContainer needs Linux.
func KillContainer(Container, ...int) (int, error) {
	return 0, errors.New("job containment needs Linux")
}
