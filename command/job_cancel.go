package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
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
	return argCommand(c.Meta, fs, "a job id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.CancelJobResponse, error) {
			return answer(client.Jobs.CancelJob(ctx, connect.NewRequest(&pb.CancelJobRequest{Id: id, Reason: reason})))
		},
		func(resp *pb.CancelJobResponse) int {
			j := resp.Job
			fmt.Fprintf(c.Meta.Stdout, "Job %s is %s: %s\n", j.Id, j.Status, j.StatusReason)
			return exitOK
		})
}
