package command

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobListCommand lists jobs.
type JobListCommand struct{ Meta *Meta }

func (c *JobListCommand) Synopsis() string { return "List jobs" }

// defaultJobListLimit is how many jobs `job list` prints unless told:
// a screenful, the most recent.
const defaultJobListLimit = 50

func (c *JobListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job list [options]

  Lists jobs, newest first: the newest 50 unless -limit or -all says
  otherwise. The servers answer a page at a time; this command asks for as
  many pages as it prints.

Options:

  -status=STATUS    Only jobs in this status (pending, running, failed, ...).
  -project=NAME     Only jobs of this project.
  -name=NAME        Only jobs of this name (the job block's name).
  -workspace=NAME   Only jobs in this workspace.
  -since=WHEN       Only jobs created since WHEN: a duration back from now
                    (30m, 24h) or a time (2026-11-23T15:00:00Z).
  -limit=N          At most N jobs. Default 50; 0 for all.
  -all              Every matching job (the same as -limit=0).
  -json             Print the jobs as JSON.
  -stale            Answer from the contacted server's copy without asking
                    the leader (works without a quorum; may lag slightly).
` + clientHelp)
}

func (c *JobListCommand) Run(args []string) int {
	var (
		asJSON, stale, all bool
		limit              uint
		since              string
		req                pb.ListJobsRequest
	)
	fs := c.Meta.flagSet("job list", true)
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&stale, "stale", false, "")
	fs.BoolVar(&all, "all", false, "")
	fs.StringVar(&req.Status, "status", "", "")
	fs.StringVar(&req.Project, "project", "", "")
	fs.StringVar(&req.Name, "name", "", "")
	fs.StringVar(&req.Workspace, "workspace", "", "")
	fs.StringVar(&since, "since", "", "")
	fs.UintVar(&limit, "limit", defaultJobListLimit, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: job list takes no arguments")
		return exitUsage
	}
	if since != "" {
		t, err := parseSince(since, time.Now())
		if err != nil {
			c.Meta.UI.Error("Error: -since: " + err.Error())
			return exitUsage
		}
		req.CreatedAfter = timestamppb.New(t)
	}
	if all {
		limit = 0
	}
	req.Stale = stale
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	// Pages until limit jobs are in hand (or none are left), each page no
	// bigger than what is still wanted, so a token left over continues
	// right after the last job printed.
	out := &pb.ListJobsResponse{}
	for {
		req.PageSize = rpc.MaxPageSize
		if limit > 0 {
			req.PageSize = uint32(min(int(limit)-len(out.Jobs), rpc.MaxPageSize))
		}
		resp, err := client.Jobs.ListJobs(context.Background(), connect.NewRequest(&req))
		if err != nil {
			return c.Meta.errorf("%s", c.Meta.apiError(client, err))
		}
		out.Jobs = append(out.Jobs, resp.Msg.Jobs...)
		out.Index, out.NextPageToken = resp.Msg.Index, resp.Msg.NextPageToken
		if out.NextPageToken == "" || (limit > 0 && len(out.Jobs) >= int(limit)) {
			break
		}
		req.PageToken = out.NextPageToken
	}
	out.Count = uint64(len(out.Jobs))
	if asJSON {
		// next_page_token, when set, lets a script go on where this
		// stopped.
		return c.Meta.printJSON(out)
	}
	if len(out.Jobs) == 0 {
		fmt.Fprintln(c.Meta.Stdout, "No jobs.")
		return exitOK
	}
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPROJECT\tJOB\tWORKSPACE\tSTATUS\tRUNNER\tCREATED\tREASON")
	for _, j := range out.Jobs {
		created := "-"
		if j.CreatedAt != nil {
			created = j.CreatedAt.AsTime().Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.Id, j.Project, j.Name, j.Workspace, j.Status, orDash(j.RunnerId), created, j.StatusReason)
	}
	w.Flush()
	if out.NextPageToken != "" {
		fmt.Fprintf(c.Meta.Stderr, "==> the newest %d jobs; more match: use -limit=N or -all for more\n", len(out.Jobs))
	}
	return exitOK
}

// parseSince reads -since: a duration back from now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: a duration back from now must not be negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (30m, 24h) nor an RFC 3339 time (2026-11-23T15:00:00Z)", s)
}
