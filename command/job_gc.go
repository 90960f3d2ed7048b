package command

import (
	"context"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobDeleteCommand removes a finished job.
type JobDeleteCommand struct{ Meta *Meta }

func (c *JobDeleteCommand) Synopsis() string { return "Remove a finished job and its logs" }

func (c *JobDeleteCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job delete [options] ID

  Removes a finished job (succeeded, failed, canceled or lost) and its
  logs from every server. A job still in play must be canceled first, and
  a pinned one unpinned. Its id is remembered for a while, so a submit that
  reuses it is refused rather than run again.
` + clientHelp)
}

func (c *JobDeleteCommand) Run(args []string) int {
	return argCommand(c.Meta, c.Meta.flagSet("job delete", true), "a job id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.DeleteJobResponse, error) {
			return answer(client.Jobs.DeleteJob(ctx, connect.NewRequest(&pb.DeleteJobRequest{Id: id})))
		},
		func(resp *pb.DeleteJobResponse) int {
			fmt.Fprintf(c.Meta.Stdout, "Job %s deleted\n", resp.Id)
			return exitOK
		})
}

// JobPinCommand pins or unpins a job.
type JobPinCommand struct{ Meta *Meta }

func (c *JobPinCommand) Synopsis() string { return "Keep a job from garbage collection" }

func (c *JobPinCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job pin [options] ID

  Pins a job, in any status: once finished, it is kept with its logs
  whatever its age and however many jobs finish after it, until unpinned.

Options:

  -undo   Unpin the job: it is garbage-collected again like any other.
` + clientHelp)
}

func (c *JobPinCommand) Run(args []string) int {
	var undo bool
	fs := c.Meta.flagSet("job pin", true)
	fs.BoolVar(&undo, "undo", false, "")
	return argCommand(c.Meta, fs, "a job id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.PinJobResponse, error) {
			return answer(client.Jobs.PinJob(ctx, connect.NewRequest(&pb.PinJobRequest{Id: id, Unpin: undo})))
		},
		func(resp *pb.PinJobResponse) int {
			if resp.Job.Pinned {
				fmt.Fprintf(c.Meta.Stdout, "Job %s pinned: it is never garbage-collected\n", resp.Job.Id)
			} else {
				fmt.Fprintf(c.Meta.Stdout, "Job %s unpinned\n", resp.Job.Id)
			}
			return exitOK
		})
}

// JobGCCommand forces a garbage-collection pass.
type JobGCCommand struct{ Meta *Meta }

func (c *JobGCCommand) Synopsis() string { return "Garbage-collect finished jobs now" }

func (c *JobGCCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job gc [options]

  Runs a garbage-collection pass on the leader now, instead of waiting for
  its next one (it checks every second): finished jobs done longer ago than
  the servers' job_gc_threshold, and the oldest beyond job_gc_max_finished,
  are deleted with their logs from every server. Pinned jobs are kept.

Options:

  -older-than=DURATION   For this pass, collect the finished jobs done
                         longer ago than this instead of job_gc_threshold;
                         0 collects every finished job not pinned.
` + clientHelp)
}

func (c *JobGCCommand) Run(args []string) int {
	var olderThan string
	fs := c.Meta.flagSet("job gc", true)
	fs.StringVar(&olderThan, "older-than", "", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: job gc takes no arguments")
		return exitUsage
	}
	req := &pb.GarbageCollectRequest{}
	if olderThan != "" {
		d, err := time.ParseDuration(olderThan)
		if err != nil || d < 0 {
			c.Meta.UI.Error(fmt.Sprintf("Error: -older-than: %q is not a duration (0, 30m, 24h)", olderThan))
			return exitUsage
		}
		req.OlderThan = durationpb.New(d)
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Jobs.GarbageCollect(context.Background(), connect.NewRequest(req))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	m := resp.Msg
	fmt.Fprintf(c.Meta.Stdout, "Collected %d finished jobs; %d finished jobs left, and %d pinned\n", m.Collected, m.Finished, m.Pinned)
	return exitOK
}
