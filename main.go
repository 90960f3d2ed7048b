// Command outpost is the outpost binary: server, runner, client and local
// runner in one. Everything lives in the command package.
package main

import (
	"os"

	"github.com/outpost-run/outpost/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:], os.Stdout, os.Stderr))
}
