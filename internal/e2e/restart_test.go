package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// record is what a user can see of a finished job: the job itself and its log.
type record struct {
	job  *pb.Job
	logs []*pb.LogChunk
}

func snapshot(t *testing.T, s *testcluster.Server, ids []string) map[string]record {
	t.Helper()
	out := map[string]record{}
	for _, id := range ids {
		j, err := getJob(context.Background(), s, id)
		if err != nil {
			t.Fatalf("GetJob %s: %v", id, err)
		}
		out[id] = record{job: j, logs: logChunks(t, s, id)}
	}
	return out
}

// checkSame fails the test unless every job and log reads back exactly as
// before. Nothing about a finished job may change across a restart.
func checkSame(t *testing.T, s *testcluster.Server, when string, want map[string]record) {
	t.Helper()
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	for id, got := range snapshot(t, s, ids) {
		w := want[id]
		if !proto.Equal(got.job, w.job) {
			t.Errorf("%s: job %s changed:\nbefore: %s\nafter:  %s", when, id, protojson.Format(w.job), protojson.Format(got.job))
		}
		if a, b := logText(w.logs), logText(got.logs); a != b || len(w.logs) != len(got.logs) {
			t.Errorf("%s: log of job %s changed:\nbefore:\n%safter:\n%s", when, id, a, b)
		}
	}
	resp, err := s.Client().Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{}))
	if err != nil {
		t.Fatalf("%s: ListJobs: %v", when, err)
	}
	if len(resp.Msg.Jobs) != len(want) {
		t.Errorf("%s: ListJobs returns %d jobs, want %d", when, len(resp.Msg.Jobs), len(want))
	}
}

// A server on disk keeps every job, result and log line across a clean
// stop and across a crash.
func TestRestartKeepsState(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{
		Name:   "keeper",
		Runner: true,
		// The restarts are under test here, not slot accounting, which
		// TestRunnerSlotsFreedWhenJobsFinish covers: enough slots for every
		// job this test runs, even if finished jobs were to keep theirs.
		Capacity: 16,
	})
	hello := helloFile(t)
	multi := writeFile(t, "outpost.hcl", `project = "multi"

job "two-steps" {
  step "one" {
    script = "for i in 1 2 3; do echo line-$i; done; echo warn-1 >&2"
  }
  step "two" {
    command = ["echo", "done"]
  }
}
`)
	runs := []struct {
		args []string
		code int
	}{
		{[]string{"-file", hello, "hello"}, 0},
		{[]string{"-file", hello, "-var", "greeting=Howdy", "-workspace", "staging", "hello"}, 0},
		{[]string{"-file", multi, "two-steps"}, 0},
		{[]string{"-file", hello, "fail"}, 3},
	}
	var ids []string
	for _, r := range runs {
		res := cli(t, s, append([]string{"job", "run"}, r.args...)...)
		if res.code != r.code {
			t.Fatalf("want exit %d; got %v", r.code, res)
		}
		ids = append(ids, queuedID(t, res))
	}
	want := snapshot(t, s, ids)
	if got := logText(want[ids[1]].logs); !strings.Contains(got, "Howdy from outpost, workspace staging") {
		t.Fatalf("variables and workspace not applied; log:\n%s", got)
	}
	if j := want[ids[3]].job; j.Status != rpc.JobFailed || j.ExitCode != 3 {
		t.Fatalf("fail job: %s exit %d", j.Status, j.ExitCode)
	}

	// After a restart the server must take new work too, and keep it.
	runOneMore := func(when string) {
		t.Helper()
		res := cli(t, s, "job", "run", "-file", hello, "hello")
		if res.code != 0 {
			t.Fatalf("%s: a new job fails: %v", when, res)
		}
		id := queuedID(t, res)
		ids = append(ids, id)
		for id, r := range snapshot(t, s, []string{id}) {
			want[id] = r
		}
	}

	if err := s.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	s.Restart()
	checkSame(t, s, "after SIGTERM and restart", want)
	runOneMore("after SIGTERM and restart")

	s.Kill()
	s.Restart()
	checkSame(t, s, "after SIGKILL and restart", want)
	runOneMore("after SIGKILL and restart")
}

// A restarted server must not hand finished jobs out again: a job's steps
// run once per attempt, however often the agent restarts.
func TestRestartDoesNotRerunFinishedJobs(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "once", Runner: true})
	counter := filepath.Join(t.TempDir(), "runs")
	project := writeFile(t, "outpost.hcl", `project = "once"

job "count" {
  step "count" {
    script = "echo ran >> `+counter+`; echo counted"
  }
}

job "marker" {
  step "m" {
    command = ["echo", "marker"]
  }
}
`)
	cliOK(t, s, "job", "run", "-file", project, "count")
	runs := func() int {
		b, err := os.ReadFile(counter)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "ran\n")
	}
	if n := runs(); n != 1 {
		t.Fatalf("the job ran %d times, want once", n)
	}

	// A crash, not a clean stop: the case where nothing but the log tells
	// the new process what happened.
	s.Kill()
	s.Restart()
	// Once a job submitted after the restart has run, the runner is
	// connected again and has been sent everything the server thinks it
	// holds; a finished job handed out again would have run by then.
	cliOK(t, s, "job", "run", "-file", project, "marker")
	if n := runs(); n != 1 {
		t.Errorf("after a restart the finished job's step has run %d times in all, want once", n)
	}
}

// A finished job gives its runner slot back: a runner with capacity 1 runs
// any number of jobs one after another.
func TestRunnerSlotsFreedWhenJobsFinish(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{Capacity: 1})
	hello := helloFile(t)
	for i := range 3 {
		id := runDetached(t, s, "-file", hello, "hello")
		j := waitFinished(t, s, id)
		if j.Status != rpc.JobSucceeded {
			t.Fatalf("job %d (%s) is %s: %s", i+1, id, j.Status, j.StatusReason)
		}
	}
}

// SIGTERM stops an agent cleanly: exit status 0, within the harness's 30s,
// nothing left running.
func TestAgentStopsOnSIGTERM(t *testing.T) {
	e2e(t)
	for _, dev := range []bool{true, false} {
		t.Run(fmt.Sprintf("dev=%v", dev), func(t *testing.T) {
			t.Parallel()
			s := testcluster.StartServer(t, testcluster.ServerOptions{Dev: dev, Runner: true})
			// A job to completion first, so the runner is connected and its
			// stream is in use when the signal comes.
			cliOK(t, s, "job", "run", "-file", helloFile(t), "hello")
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
