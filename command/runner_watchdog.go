package command

import (
	"os"

	"github.com/outpost-run/outpost/runner/watchdog"
)

// RunnerWatchdogCommand is the hidden `outpost runner-watchdog`: the
// process a runner starts beside itself to kill its jobs if it freezes or
// dies (see package runner/watchdog). The runner starts it; a person
// never needs to.
type RunnerWatchdogCommand struct{ Meta *Meta }

func (c *RunnerWatchdogCommand) Synopsis() string {
	return "Kill a runner's jobs when it cannot (internal)"
}
func (c *RunnerWatchdogCommand) Help() string {
	return "Usage: outpost " + watchdog.Command + "\n\n" +
		"  Started by `outpost runner agent`, one per runner, with a pipe on its\n" +
		"  stdin. It kills the runner's jobs when the runner's fence deadline\n" +
		"  passes or the runner dies. Not for use by hand."
}

func (c *RunnerWatchdogCommand) Run(args []string) int {
	if len(args) > 0 {
		c.Meta.UI.Error(c.Help())
		return exitUsage
	}
	return watchdog.Main(os.Stdin, os.Stderr)
}
