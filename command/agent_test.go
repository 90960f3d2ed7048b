package command

import (
	"flag"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-run/outpost/agent"
)

// The flags each agent command registers are the ones its help lists,
// no more and no fewer, now that the builder registers them.
func TestAgentHelpListsEveryFlag(t *testing.T) {
	option := regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`)
	for _, tc := range []struct {
		help string
		cmd  agent.Command
	}{
		{(&AgentCommand{}).Help(), agent.CommandAgent},
		{(&RunnerAgentCommand{}).Help(), agent.CommandRunnerAgent},
	} {
		var listed []string
		for _, m := range option.FindAllStringSubmatch(tc.help, -1) {
			listed = append(listed, m[1])
		}
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		agent.NewBuilder(tc.cmd).AddFlags(fs)
		var bound []string
		fs.VisitAll(func(f *flag.Flag) { bound = append(bound, f.Name) })
		slices.Sort(listed)
		slices.Sort(bound)
		if !slices.Equal(listed, bound) {
			t.Errorf("%s: help lists %v, flags are %v", strings.SplitN(tc.help, "\n", 2)[0], listed, bound)
		}
	}
}
