package command

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobStatusCommand shows one job.
type JobStatusCommand struct{ Meta *Meta }

func (c *JobStatusCommand) Synopsis() string { return "Show a job's status" }

func (c *JobStatusCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job status [options] ID

  Shows a job: its status and why, where it runs, its attempts and times.
  ID may be a unique prefix.

Options:

  -json    Print the job as JSON.
  -stale   Answer from the contacted server's copy without asking the
           leader (works without a quorum; may lag slightly).
` + clientHelp)
}

func (c *JobStatusCommand) Run(args []string) int {
	var asJSON bool
	fs := c.Meta.flagSet("job status", true)
	fs.BoolVar(&asJSON, "json", false, "")
	var stale bool
	fs.BoolVar(&stale, "stale", false, "")
	return argCommand(c.Meta, fs, "a job id", args,
		func(ctx context.Context, client *rpc.Client, id string) (*pb.Job, error) {
			resp, err := client.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id, Stale: stale}))
			if err != nil {
				return nil, err
			}
			return resp.Msg.Job, nil
		},
		func(j *pb.Job) int {
			if asJSON {
				return c.Meta.printJSON(j)
			}
			return c.show(j)
		})
}

// show prints one job in the human layout.
func (c *JobStatusCommand) show(j *pb.Job) int {
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(w, "%s\t%s\n", k, v) }
	row("ID", j.Id)
	row("Project", j.Project)
	row("Job", j.Name)
	row("Workspace", j.Workspace)
	row("Status", j.Status)
	row("Reason", j.StatusReason)
	if j.Pinned {
		row("Pinned", "yes: never garbage-collected (`outpost job pin -undo` to unpin)")
	}
	row("Attempt", fmt.Sprint(j.Attempt))
	row("Runner profile", orDash(j.Profile))
	row("Runner", orDash(j.RunnerId))
	if j.Lease > 0 {
		row("Lease", fmt.Sprint(j.Lease))
	}
	if j.Status == rpc.JobSucceeded || j.Status == rpc.JobFailed {
		row("Exit code", fmt.Sprint(j.ExitCode))
	}
	if j.Error != "" {
		row("Error", j.Error)
	}
	row("Created", timeString(j.CreatedAt))
	row("Started", timeString(j.StartedAt))
	row("Finished", timeString(j.FinishedAt))
	if j.StartedAt != nil && j.FinishedAt != nil {
		row("Duration", j.FinishedAt.AsTime().Sub(j.StartedAt.AsTime()).Round(time.Millisecond).String())
	}
	if j.CpuTime != nil {
		row("CPU time", j.CpuTime.AsDuration().Round(time.Millisecond).String())
	}
	if j.PeakMemoryBytes > 0 {
		row("Peak memory", humanBytes(j.PeakMemoryBytes))
	}
	if j.LostLease > 0 && !rpc.JobTerminal(j.Status) {
		row("Lost attempt", fmt.Sprintf("%d on %s (lease %d): its result is still taken if it arrives before a newer attempt starts", j.LostAttempt, j.LostRunnerId, j.LostLease))
	}
	if len(j.Variables) > 0 {
		keys := make([]string, 0, len(j.Variables))
		for k := range j.Variables {
			keys = append(keys, k+"="+j.Variables[k])
		}
		sort.Strings(keys)
		row("Variables", strings.Join(keys, " "))
	}
	steps := make([]string, 0, len(j.Steps))
	for _, s := range j.Steps {
		steps = append(steps, s.Name)
	}
	row("Steps", strings.Join(steps, ", "))
	switch {
	case j.LogDroppedLines > 0:
		row("Logs", fmt.Sprintf("%d lines (%s) of output left out between the head and the tail", j.LogDroppedLines, humanBytes(j.LogDroppedBytes)))
	case j.LogsTruncated:
		row("Logs", "truncated at the per-attempt limit")
	}
	w.Flush()
	return exitOK
}

// humanBytes prints a size in binary units, as the kernel counts memory.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeString(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format(time.RFC3339Nano)
}
