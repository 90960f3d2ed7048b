package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobCancelCommand cancels a job.
type JobCancelCommand struct{ Meta *Meta }

func (c *JobCancelCommand) Synopsis() string { return "Cancel a job" }

func (c *JobCancelCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job cancel [options] ID

  Cancels a job. A pending job ends at once; a running one is sent SIGTERM,
  then SIGKILL after its abort_timeout (default 30s).

Options:

  -reason=TEXT   Why, recorded on the job.
` + clientHelp)
}

func (c *JobCancelCommand) Run(args []string) int {
	var reason string
	fs := c.Meta.flagSet("job cancel", true)
	fs.StringVar(&reason, "reason", "", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: job cancel takes exactly one argument, a job id")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Jobs.CancelJob(context.Background(), connect.NewRequest(&pb.CancelJobRequest{Id: fs.Arg(0), Reason: reason}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	j := resp.Msg.Job
	fmt.Fprintf(c.Meta.Stdout, "Job %s is %s: %s\n", j.Id, j.Status, j.StatusReason)
	return exitOK
}
