package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// jobTimeout bounds the wait for a short job to end. Jobs here take well
// under a second; the rest is headroom for a loaded machine.
const jobTimeout = 60 * time.Second

// e2e marks a test as an integration test: skipped with -short, and run in
// parallel with the others, as each uses its own processes and ports.
func e2e(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real agents; skipped with -short")
	}
	t.Parallel()
}

func startDev(t *testing.T, opts testcluster.ServerOptions) *testcluster.Server {
	t.Helper()
	opts.Dev = true
	if opts.Name == "" {
		opts.Name = "dev"
	}
	return testcluster.StartServer(t, opts)
}

// helloFile is the example project every user tries first.
func helloFile(t *testing.T) string {
	t.Helper()
	return filepath.Join(testcluster.RepoRoot(t), "examples", "hello", "outpost.hcl")
}

// writeFile writes content to name in a fresh temporary directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is one CLI invocation.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("`outpost %s` exited %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

func cli(t *testing.T, s *testcluster.Server, args ...string) result {
	t.Helper()
	out, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), s.Env(), args...)
	return result{args: args, stdout: out, stderr: errOut, code: code}
}

// cliOK runs a command that must succeed.
func cliOK(t *testing.T, s *testcluster.Server, args ...string) result {
	t.Helper()
	r := cli(t, s, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

var queuedRE = regexp.MustCompile(`==> job (j-[0-9a-f]+) queued`)

// queuedID returns the id `job run` printed when it queued the job.
func queuedID(t *testing.T, r result) string {
	t.Helper()
	m := queuedRE.FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("no \"job ID queued\" line in the output of %v", r)
	}
	return m[1]
}

// runDetached submits a job with -detach and returns its id.
func runDetached(t *testing.T, s *testcluster.Server, args ...string) string {
	t.Helper()
	r := cliOK(t, s, append([]string{"job", "run", "-detach"}, args...)...)
	id := strings.TrimSpace(r.stdout)
	if !strings.HasPrefix(id, "j-") {
		t.Fatalf("job run -detach printed no job id: %v", r)
	}
	return id
}

// statusJSON reads a job through `job status -json`, as a script would.
func statusJSON(t *testing.T, s *testcluster.Server, id string) *pb.Job {
	t.Helper()
	r := cliOK(t, s, "job", "status", "-json", id)
	j := &pb.Job{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(r.stdout), j); err != nil {
		t.Fatalf("job status -json is not a job: %v\n%v", err, r)
	}
	return j
}

func getJob(ctx context.Context, s *testcluster.Server, id string) (*pb.Job, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := s.Client().Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.Job, nil
}

// waitJob waits until the job satisfies cond and returns it.
func waitJob(t *testing.T, s *testcluster.Server, id, want string, cond func(*pb.Job) bool) *pb.Job {
	t.Helper()
	var job *pb.Job
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		if s.Exited() {
			// No point waiting out the deadline for a dead server.
			t.Fatalf("%s exited (%s) while job %s was awaited", s.Name(), s.ExitState(), id)
		}
		j, err := getJob(context.Background(), s, id)
		if err != nil {
			return false, fmt.Sprintf("GetJob %s: %v", id, err)
		}
		job = j
		return cond(j), fmt.Sprintf("job %s is %s (%s); want %s", id, j.Status, j.StatusReason, want)
	})
	return job
}

func waitStatus(t *testing.T, s *testcluster.Server, id, status string) *pb.Job {
	t.Helper()
	return waitJob(t, s, id, status, func(j *pb.Job) bool { return j.Status == status })
}

func waitFinished(t *testing.T, s *testcluster.Server, id string) *pb.Job {
	t.Helper()
	return waitJob(t, s, id, "finished", func(j *pb.Job) bool { return rpc.JobTerminal(j.Status) })
}

// logChunks reads a job's stored log through the API.
func logChunks(t *testing.T, s *testcluster.Server, id string) []*pb.LogChunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := s.Client().Jobs.ReadLogs(ctx, connect.NewRequest(&pb.ReadLogsRequest{Id: id}))
	if err != nil {
		t.Fatalf("ReadLogs %s: %v", id, err)
	}
	defer stream.Close()
	var out []*pb.LogChunk
	for stream.Receive() {
		out = append(out, stream.Msg().Chunks...)
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("ReadLogs %s: %v", id, err)
	}
	return out
}

// logText is a job's log as "stream: text" lines.
func logText(chunks []*pb.LogChunk) string {
	var b strings.Builder
	for _, c := range chunks {
		for _, l := range c.Lines {
			fmt.Fprintf(&b, "%s: %s\n", l.Stream, l.Text)
		}
	}
	return b.String()
}
