// Command outpost is the outpost binary: server, runner, client and local
// runner in one. Everything lives in the command package.
package main

import (
	"os"

	"github.com/outpost-run/outpost/command"
	"github.com/outpost-run/outpost/runner/executor"
)

func main() {
	// The runner re-executes this binary to start on_demand steps under
	// resource limits. It is dispatched before the CLI so the step's own
	// arguments (a --version, say) are never read as outpost's flags.
	if len(os.Args) > 1 && os.Args[1] == executor.LauncherCommand {
		os.Exit(executor.LaunchMain(os.Args[2:], os.Environ(), os.Stderr))
	}
	os.Exit(command.Run(os.Args[1:], os.Stdout, os.Stderr))
}
