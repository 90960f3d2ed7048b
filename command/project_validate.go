package command

import (
	"fmt"
	"os"
	"strings"

	"github.com/outpost-run/outpost/jobspec/project"
)

// ProjectValidateCommand checks a project file without running anything.
type ProjectValidateCommand struct{ Meta *Meta }

func (c *ProjectValidateCommand) Synopsis() string { return "Check a project file" }

func (c *ProjectValidateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost project validate [options]

  Parses a project file and evaluates every job with the given variables
  and workspace, reporting each problem as file:line:col. Needs no server.

Options:

  -file=PATH        Project file. Default ./outpost.hcl.
  -var=k=v          Set a project variable; repeatable.
  -workspace=NAME   Workspace to evaluate in.
`)
}

func (c *ProjectValidateCommand) Run(args []string) int {
	var (
		file, workspace string
		vars            = kvFlag{}
	)
	fs := c.Meta.flagSet("project validate", false)
	fs.StringVar(&file, "file", "outpost.hcl", "")
	fs.StringVar(&workspace, "workspace", "", "")
	fs.Var(vars, "var", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: project validate takes no arguments")
		return exitUsage
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return c.Meta.errorf("reading project file: %v", err)
	}
	p, err := project.Parse(file, src)
	if err != nil {
		c.Meta.UI.Error(err.Error())
		return exitError
	}
	failed := false
	for _, name := range p.JobNames() {
		if _, err := p.Resolve(name, vars, workspace); err != nil {
			c.Meta.UI.Error(err.Error())
			failed = true
		}
	}
	if failed {
		return exitError
	}
	fmt.Fprintf(c.Meta.Stdout, "%s: valid. Project %q, jobs: %s\n", file, p.Name, strings.Join(p.JobNames(), ", "))
	return exitOK
}
