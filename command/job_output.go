package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// printLine writes one log line, its bytes as the step printed them: a
// job's stdout to ours, everything else to our stderr, so `outpost job run
// … > out.txt` captures just the output.
func printLine(stdout, stderr io.Writer, stream string, line []byte) {
	w := stderr
	if stream == "stdout" {
		w = stdout
	}
	_, _ = w.Write(append(line[:len(line):len(line)], '\n'))
}

// logPrinter prints a job's log chunks and marks where one attempt's lines
// end and the next one's begin: a retried job's log holds every attempt,
// and without the mark the second run reads as the first one going on.
type logPrinter struct {
	stdout, stderr io.Writer
	attempt        uint32 // of the last chunk printed; 0 before the first
}

func (p *logPrinter) print(ch *pb.LogChunk) {
	// 0 is a chunk that does not say (none is written so today).
	if ch.Attempt != 0 && ch.Attempt != p.attempt {
		if p.attempt != 0 || ch.Attempt > 1 {
			fmt.Fprintf(p.stderr, "==> attempt %d\n", ch.Attempt)
		}
		p.attempt = ch.Attempt
	}
	for _, l := range ch.Lines {
		printLine(p.stdout, p.stderr, l.Stream, rpc.LineBytes(l))
	}
}

// followLogs prints a job's logs until it is finished and returns the final
// job. A broken stream (a server restarting) is resumed where it stopped.
func followLogs(ctx context.Context, c *rpc.Client, id string, stdout, stderr io.Writer) (*pb.Job, error) {
	var after uint64
	failures := 0
	p := &logPrinter{stdout: stdout, stderr: stderr}
	for {
		stream, err := c.Jobs.ReadLogs(ctx, connect.NewRequest(&pb.ReadLogsRequest{Id: id, AfterSeq: after, Follow: true}))
		if err == nil {
			var status string
			for stream.Receive() {
				failures = 0
				msg := stream.Msg()
				for _, ch := range msg.Chunks {
					p.print(ch)
					after = ch.Seq
				}
				status = msg.Status
			}
			err = stream.Err()
			stream.Close()
			if err == nil && rpc.JobTerminal(status) {
				resp, err := c.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id}))
				if err != nil {
					return nil, err
				}
				return resp.Msg.Job, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ce *connect.Error
		if errors.As(err, &ce) && (ce.Code() == connect.CodeNotFound || ce.Code() == connect.CodeInvalidArgument) {
			return nil, err
		}
		failures++
		if failures > 30 {
			return nil, fmt.Errorf("following logs of %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(failures) * 200 * time.Millisecond):
		}
	}
}

// jobExitCode maps a finished job to the CLI's exit code: 0 on success, the
// failing step's exit code when it has one, else 1.
func jobExitCode(j *pb.Job) int {
	if j.Status == rpc.JobSucceeded {
		return exitOK
	}
	if j.Status == rpc.JobFailed && j.ExitCode > 0 && j.ExitCode < 256 {
		return int(j.ExitCode)
	}
	return exitError
}
