package command

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobListCommand lists jobs.
type JobListCommand struct{ Meta *Meta }

func (c *JobListCommand) Synopsis() string { return "List jobs" }

func (c *JobListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job list [options]

  Lists jobs, oldest first.

Options:

  -status=STATUS   Only jobs in this status (pending, running, failed, ...).
  -project=NAME    Only jobs of this project.
  -limit=N         Only the newest N jobs. Default 100; 0 for all.
  -json            Print the jobs as JSON.
  -stale           Answer from the contacted server's copy without asking
                   the leader (works without a quorum; may lag slightly).
` + clientHelp)
}

func (c *JobListCommand) Run(args []string) int {
	var (
		asJSON       bool
		status, proj string
		limit        uint
	)
	fs := c.Meta.flagSet("job list", true)
	fs.BoolVar(&asJSON, "json", false, "")
	var stale bool
	fs.BoolVar(&stale, "stale", false, "")
	fs.StringVar(&status, "status", "", "")
	fs.StringVar(&proj, "project", "", "")
	fs.UintVar(&limit, "limit", 100, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: job list takes no arguments")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{
		Status: status, Project: proj, Limit: uint32(limit), Stale: stale,
	}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	if len(resp.Msg.Jobs) == 0 {
		fmt.Fprintln(c.Meta.Stdout, "No jobs.")
		return exitOK
	}
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPROJECT\tJOB\tWORKSPACE\tSTATUS\tRUNNER\tCREATED\tREASON")
	for _, j := range resp.Msg.Jobs {
		created := "-"
		if j.CreatedAt != nil {
			created = j.CreatedAt.AsTime().Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Id, j.Project, j.Name, j.Workspace, j.Status, orDash(j.RunnerId), created, j.StatusReason)
	}
	w.Flush()
	return exitOK
}
