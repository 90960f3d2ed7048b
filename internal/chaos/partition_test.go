package chaos

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

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// A runner whose server is cut off leaves it for a healthy server within
// the move time and delivers the result of the job it was running: the
// job ends with that attempt, not a second one. Two kinds of cut: the
// runner's traffic to its server is black-holed (no error, just silence),
// and the server is cut off from the other servers while the runner still
// reaches it (a server with no leader, which confirms nothing). The runner
// is told of that one server only, so it must have learned the others.
func TestRunnerLeavesCutOffServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 3 servers and a runner in network namespaces; skipped with -short")
	}
	if err := NetworkSupport(); err != nil {
		t.Skipf("network namespaces: %v", err)
	}
	// One network for both cases: the kernel removes a namespace's veth
	// pair some time after the namespace, so names cannot be reused at once.
	nw, err := NewNetwork([]string{"s1", "s2", "s3", "r1"})
	if err != nil {
		t.Skipf("network namespaces: %v", err)
	}
	t.Cleanup(nw.Close)
	for _, kind := range []string{"black-hole", "leaderless"} {
		t.Run(kind, func(t *testing.T) {
			t.Cleanup(func() {
				if err := nw.HealAll(); err != nil {
					t.Error(err)
				}
			})
			hosts := []string{"s1", "s2", "s3"}
			c := testcluster.StartClusterEach(t, 3, testcluster.ServerOptions{Name: "cut-" + kind, ReadyTimeout: 60 * time.Second},
				func(i int, o *testcluster.ServerOptions) {
					h := nw.Host(hosts[i])
					o.Host, o.Prefix = h.IP, h.Prefix()
				})
			leader := c.WaitForLeader(60 * time.Second)
			// The runner's one server is a follower: cutting the leader off
			// would make the others elect a new one, a different story.
			var only *testcluster.Server
			onlyHost := ""
			for i, s := range c.Servers {
				if s != leader {
					only, onlyHost = s, hosts[i]
					break
				}
			}
			bin := testcluster.Binary(t)
			cli := func(args ...string) string {
				t.Helper()
				out, errOut, code := testcluster.RunCLI(t, bin, leader.Env(), args...)
				if code != 0 {
					t.Fatalf("outpost %s exited %d: %s", strings.Join(args, " "), code, errOut)
				}
				return out
			}
			token, _, _ := strings.Cut(cli("runner", "token", "create"), "\n")
			h := nw.Host("r1")
			r := testcluster.StartRunner(t, testcluster.RunnerOptions{
				Name: "cut-runner", Servers: []string{only.Addr()}, Token: strings.TrimSpace(token),
				Bind: h.IP, Prefix: h.Prefix(), Capacity: 1,
			})
			r.WaitListed(leader, "adopted", "ready", 60*time.Second)
			testcluster.WaitFor(t, 60*time.Second, func() (bool, string) {
				b, err := os.ReadFile(filepath.Join(r.Options().DataDir, "servers.json"))
				return err == nil && strings.Count(string(b), "https://") >= 2, "the runner has not learned the other servers: " + string(b)
			})

			dir := t.TempDir()
			project := filepath.Join(dir, "outpost.hcl")
			if err := os.WriteFile(project, []byte(`project = "cut"

job "work" {
  step "s" {
    script = "echo started; sleep 8; echo finished"
  }
}
`), 0o644); err != nil {
				t.Fatal(err)
			}
			out := cli("job", "run", "-detach", "-file", project, "work")
			id := strings.TrimSpace(out)
			first := waitJob(t, leader, id, func(j *pb.Job) bool { return j.Status == rpc.JobRunning })
			switch kind {
			case "black-hole":
				if _, err := nw.Cut([]string{"r1"}, []string{onlyHost}); err != nil {
					t.Fatal(err)
				}
			case "leaderless":
				var others []string
				for _, hn := range hosts {
					if hn != onlyHost {
						others = append(others, hn)
					}
				}
				if _, err := nw.Cut([]string{onlyHost}, others); err != nil {
					t.Fatal(err)
				}
			}
			cutAt := time.Now()
			done := waitJob(t, leader, id, func(j *pb.Job) bool { return rpc.JobTerminal(j.Status) })
			if done.Status != rpc.JobSucceeded || done.Lease != first.Lease || done.Attempt != 1 {
				t.Errorf("job ended %s (%s), attempt %d under lease %d; want succeeded, attempt 1, under its first lease %d: the runner's result was not delivered",
					done.Status, done.StatusReason, done.Attempt, done.Lease, first.Lease)
			}
			moved := regexp.MustCompile(`(\S+) \[WARN\]  outpost\.runner: stream to server ended; trying the next server: .*server=` + regexp.QuoteMeta(only.Addr()) + `.*`)
			m := moved.FindStringSubmatch(r.Logs())
			if m == nil {
				t.Fatalf("the runner never left %s; its log:\n%s", only.Addr(), r.Tail(40))
			}
			after := "?"
			if at, err := time.Parse("2006-01-02T15:04:05.000Z0700", m[1]); err == nil {
				after = at.Sub(cutAt).Round(100 * time.Millisecond).String()
			}
			t.Logf("observation: %s after the cut, the runner logged: %s", after, m[0])
		})
	}
}

// waitJob polls the job through s until cond holds.
func waitJob(t *testing.T, s *testcluster.Server, id string, cond func(*pb.Job) bool) *pb.Job {
	t.Helper()
	var job *pb.Job
	testcluster.WaitFor(t, 2*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Client().Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id}))
		if err != nil {
			return false, err.Error()
		}
		job = resp.Msg.Job
		return cond(job), fmt.Sprintf("job %s is %s (%s)", id, job.Status, job.StatusReason)
	})
	return job
}
