package command

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/jobspec/project"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ProjectApplyCommand stores a project in the cluster.
type ProjectApplyCommand struct{ Meta *Meta }

func (c *ProjectApplyCommand) Synopsis() string { return "Store a project file in the cluster" }

func (c *ProjectApplyCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost project apply [options]

  Validates a project file and stores it, verbatim, in the cluster, so its
  jobs can be run by name: outpost job run -project NAME JOB.

Options:

  -file=PATH   Project file. Default ./outpost.hcl.
` + clientHelp)
}

func (c *ProjectApplyCommand) Run(args []string) int {
	var file string
	fs := c.Meta.flagSet("project apply", true)
	fs.StringVar(&file, "file", "outpost.hcl", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return c.Meta.errorf("reading project file: %v", err)
	}
	if _, err := project.Parse(file, src); err != nil {
		c.Meta.UI.Error(err.Error())
		return exitError
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Projects.ApplyProject(context.Background(), connect.NewRequest(&pb.ApplyProjectRequest{Source: src, Filename: filepath.Base(file)}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	fmt.Fprintf(c.Meta.Stdout, "Project %q stored; jobs: %s\n", resp.Msg.Project.Name, strings.Join(resp.Msg.Jobs, ", "))
	return exitOK
}

// ProjectListCommand lists stored projects.
type ProjectListCommand struct{ Meta *Meta }

func (c *ProjectListCommand) Synopsis() string { return "List stored projects" }

func (c *ProjectListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost project list [options]

  Lists the projects stored in the cluster.

Options:

  -json   Print as JSON.
` + clientHelp)
}

func (c *ProjectListCommand) Run(args []string) int {
	return readCommand(c.Meta, "project list", args, false,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListProjectsResponse, error) {
			// Every page: projects are few next to jobs.
			ps, err := rpc.AllProjects(ctx, client.Projects, stale)
			return &pb.ListProjectsResponse{Projects: ps}, err
		},
		func(resp *pb.ListProjectsResponse) {
			if len(resp.Projects) == 0 {
				fmt.Fprintln(c.Meta.Stdout, "No projects. Store one with `outpost project apply -file outpost.hcl`.")
				return
			}
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tFILE\tBYTES\tINDEX")
			for _, p := range resp.Projects {
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", p.Name, p.Filename, len(p.Source), p.ModifyIndex)
			}
			w.Flush()
		})
}

// ProjectInspectCommand shows a stored project.
type ProjectInspectCommand struct{ Meta *Meta }

func (c *ProjectInspectCommand) Synopsis() string { return "Show a stored project" }

func (c *ProjectInspectCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost project inspect [options] NAME

  Prints a stored project file as it was applied, after a line naming its
  jobs.

Options:

  -json   Print as JSON.
` + clientHelp)
}

func (c *ProjectInspectCommand) Run(args []string) int {
	var asJSON bool
	fs := c.Meta.flagSet("project inspect", true)
	fs.BoolVar(&asJSON, "json", false, "")
	return argCommand(c.Meta, fs, "the project name", args,
		func(ctx context.Context, client *rpc.Client, name string) (*pb.GetProjectResponse, error) {
			return answer(client.Projects.GetProject(ctx, connect.NewRequest(&pb.GetProjectRequest{Name: name})))
		},
		func(resp *pb.GetProjectResponse) int {
			if asJSON {
				return c.Meta.printJSON(resp)
			}
			fmt.Fprintf(c.Meta.Stderr, "# project %s (%s), jobs: %s\n", resp.Project.Name, resp.Project.Filename, strings.Join(resp.Jobs, ", "))
			c.Meta.Stdout.Write(resp.Project.Source)
			return exitOK
		})
}

// ProjectDeleteCommand removes a stored project.
type ProjectDeleteCommand struct{ Meta *Meta }

func (c *ProjectDeleteCommand) Synopsis() string { return "Remove a stored project" }

func (c *ProjectDeleteCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost project delete [options] NAME

  Removes a stored project. Its jobs and their logs stay.
` + clientHelp)
}

func (c *ProjectDeleteCommand) Run(args []string) int {
	return argCommand(c.Meta, c.Meta.flagSet("project delete", true), "the project name", args,
		func(ctx context.Context, client *rpc.Client, name string) (string, error) {
			_, err := client.Projects.DeleteProject(ctx, connect.NewRequest(&pb.DeleteProjectRequest{Name: name}))
			return name, err
		},
		func(name string) int {
			fmt.Fprintf(c.Meta.Stdout, "Project %q deleted\n", name)
			return exitOK
		})
}
