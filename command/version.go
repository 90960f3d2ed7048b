package command

import (
	"fmt"
	"runtime"

	"github.com/outpost-run/outpost/agent"
)

// VersionCommand prints the version.
type VersionCommand struct{ Meta *Meta }

func (c *VersionCommand) Synopsis() string { return "Print the outpost version" }
func (c *VersionCommand) Help() string {
	return "Usage: outpost version\n\n  Prints the version of this binary."
}
func (c *VersionCommand) Run(args []string) int {
	fmt.Fprintf(c.Meta.Stdout, "outpost %s (%s, %s/%s)\n", agent.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
