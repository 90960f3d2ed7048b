package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
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
	return argCommand(c.Meta, c.Meta.flagSet("job retry", true), "a job id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.RetryJobResponse, error) {
			return answer(client.Jobs.RetryJob(ctx, connect.NewRequest(&pb.RetryJobRequest{Id: id})))
		},
		func(resp *pb.RetryJobResponse) int {
			j := resp.Job
			fmt.Fprintf(c.Meta.Stdout, "Job %s queued as attempt %d\n", j.Id, j.Attempt)
			return exitOK
		})
}
