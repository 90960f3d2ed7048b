package runner

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// TestPendingLinesStayUnderTheLimitEncoded fills a job's buffer with many
// tiny lines, as a chatty job does while no server is reachable, and checks
// that the result carrying them stays within maxPendingLogBytes encoded:
// the limit once counted text only, and a million one-byte lines made a
// result bigger than a server accepts.
func TestPendingLinesStayUnderTheLimitEncoded(t *testing.T) {
	for _, text := range []string{"", "x", "a line of ordinary length, as a build prints it"} {
		e := &execution{job: &pb.Job{Id: "j-1"}, kick: make(chan struct{}, 1)}
		now := time.Now()
		for range 200000 {
			e.add(executor.LogLine{Time: now, Stream: executor.Stdout, Step: "build", Text: text})
		}
		fin := &pb.JobFinished{JobId: "j-1", Lease: 7, Outcome: "succeeded", Lines: e.take(maxPendingLogBytes)}
		if n := proto.Size(fin); n > maxPendingLogBytes+1024 {
			t.Errorf("lines of %d bytes: result is %d bytes encoded, over the %d byte limit", len(text), n, maxPendingLogBytes)
		}
		if fin.Lines[0].Stream != "system" {
			t.Errorf("lines of %d bytes: no marker for the dropped lines; first line %q", len(text), fin.Lines[0].Data)
		}
	}
}
