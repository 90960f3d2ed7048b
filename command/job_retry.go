package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobRetryCommand re-runs a finished job.
type JobRetryCommand struct{ Meta *Meta }

func (c *JobRetryCommand) Synopsis() string { return "Run a finished job again" }

func (c *JobRetryCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job retry [options] ID

  Queues a finished job (succeeded, failed, canceled or lost) again as its
  next attempt, with the same resolved steps and targets.
` + clientHelp)
}

func (c *JobRetryCommand) Run(args []string) int {
	fs := c.Meta.flagSet("job retry", true)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: job retry takes exactly one argument, a job id")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Jobs.RetryJob(context.Background(), connect.NewRequest(&pb.RetryJobRequest{Id: fs.Arg(0)}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	j := resp.Msg.Job
	fmt.Fprintf(c.Meta.Stdout, "Job %s queued as attempt %d\n", j.Id, j.Attempt)
	return exitOK
}
