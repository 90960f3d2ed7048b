package command

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// JobLogsCommand prints a job's logs.
type JobLogsCommand struct{ Meta *Meta }

func (c *JobLogsCommand) Synopsis() string { return "Print a job's logs" }

func (c *JobLogsCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost job logs [options] ID

  Prints a job's output: its stdout on stdout, its stderr and outpost's own
  lines on stderr. Logs are kept by the servers, so they can be read after
  the runner that produced them is gone.

Options:

  -f   Follow: keep printing until the job is finished.

  The log holds every attempt of a retried job; a line "==> attempt N"
  marks where each attempt after the first begins.
` + clientHelp)
}

func (c *JobLogsCommand) Run(args []string) int {
	var follow bool
	fs := c.Meta.flagSet("job logs", true)
	fs.BoolVar(&follow, "f", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: job logs takes exactly one argument, a job id")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if follow {
		if _, err := followLogs(ctx, client, fs.Arg(0), c.Meta.Stdout, c.Meta.Stderr); err != nil && ctx.Err() == nil {
			return c.Meta.errorf("%s", c.Meta.apiError(client, err))
		}
		return exitOK
	}
	stream, err := client.Jobs.ReadLogs(ctx, connect.NewRequest(&pb.ReadLogsRequest{Id: fs.Arg(0)}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	defer stream.Close()
	p := &logPrinter{stdout: c.Meta.Stdout, stderr: c.Meta.Stderr}
	for stream.Receive() {
		for _, ch := range stream.Msg().Chunks {
			p.print(ch)
		}
	}
	if err := stream.Err(); err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	return exitOK
}
