package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Runner identity tests (issue 15): a runner id belongs to the holder of
// its secret; tokens adopt only new ids, as often and for whom they say;
// a rejected runner is cut off at once and for good.

// impostorDir makes a runner data dir that claims id with a secret of its
// own, as someone who learned a runner's id (not its secret) would.
func impostorDir(t *testing.T, id string) string {
	t.Helper()
	dir := t.TempDir()
	b, _ := json.Marshal(map[string]any{"id": id, "secret": "impostor-secret-0123456789abcdef", "life": 1})
	if err := os.WriteFile(filepath.Join(dir, "identity.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pinnedProject is a project whose job runs only on runner id and writes
// down where it ran.
func pinnedProject(t *testing.T, s *testcluster.Server, id, rec string) string {
	t.Helper()
	profiles := writeFile(t, "pinned.hcl", fmt.Sprintf("runner_profile \"pinned\" {\n  target_runner_id = %q\n}\n", id))
	cliOK(t, s, "runner", "profile", "set", "-file", profiles)
	return writeFile(t, "outpost.hcl", `project = "secrets"

runner {
  profile = "pinned"
}

job "deploy" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
    EOT
  }
}
`)
}

// waitLogN waits until a process's log holds text n times.
func waitLogN(t *testing.T, p *testcluster.Process, text string, n int) {
	t.Helper()
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		return strings.Count(p.Logs(), text) >= n, fmt.Sprintf("%s's log does not say %q %d times yet; tail:\n%s", p.Name(), text, n, p.Tail(10))
	})
}

// The takeover of issue 15, step by step: while the victim lives, its id
// cannot be registered with another secret, token or not, and it keeps
// running jobs; once it is rejected and forgotten, the impostor with a
// freshly minted token is only pending, and the job meant for the victim
// never runs on it; the victim's rejected secret stays refused.
func TestRunnerTakeoverFails(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "takeover"})
	rec := recordDir(t)
	victim := startAdopted(t, s, testcluster.RunnerOptions{Name: "victim"})
	project := pinnedProject(t, s, victim.ID(), rec)

	impostor := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "impostor", Servers: []string{s.Addr()},
		Token: newToken(t, s), DataDir: impostorDir(t, victim.ID())})
	waitLog(t, impostor.Process, "registered with a different secret")
	if x := victim.WaitListed(s, "adopted", "ready", runnerWait); x.Name != "victim" {
		t.Fatalf("runner %s is listed with name %q after the impostor's attempt, want victim's record untouched", x.Id, x.Name)
	}
	id := runDetached(t, s, "-file", project, "deploy")
	if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded || j.RunnerId != victim.ID() {
		t.Fatalf("job %s is %s on %q, want succeeded on the victim %s", id, j.Status, j.RunnerId, victim.ID())
	}
	impostor.Kill()

	cliOK(t, s, "runner", "reject", victim.ID())
	waitLog(t, victim.Process, "was rejected by an operator")
	cliOK(t, s, "runner", "forget", victim.ID())
	// The victim itself, back with its rejected secret, is refused.
	victim.Kill()
	if err := victim.TryRestart(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, victim.Process, "its secret is refused for good")
	if _, err := victim.Listed(s); err == nil {
		t.Errorf("the rejected victim was listed again after forget")
	}
	victim.Kill()

	fresh := newToken(t, s)
	impostor = testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "impostor2", Servers: []string{s.Addr()},
		Token: fresh, DataDir: impostorDir(t, victim.ID())})
	x := impostor.WaitListed(s, "pending", "ready", runnerWait)
	if !strings.Contains(x.StatusReason, "forgotten") {
		t.Errorf("the impostor is pending with reason %q, want one saying the id was forgotten", x.StatusReason)
	}
	id = runDetached(t, s, "-file", project, "deploy")
	// The dispatcher has looked at the job once it says why it waits.
	j := waitJob(t, s, id, "pending with a reason", func(j *pb.Job) bool { return j.Status == rpc.JobPending && j.StatusReason != "" })
	impostor.WaitListed(s, "pending", "ready", runnerWait)
	if j.RunnerId != "" {
		t.Errorf("job %s was given to %q", id, j.RunnerId)
	}
	if ran := findRecords(readRecords(t, rec), "ran", id, 0, ""); len(ran) != 0 {
		t.Errorf("the job meant for the victim ran: %v", ran)
	}
}

// A single-use token adopts one runner; the second is refused and never
// listed. list shows the use; a revoked token adopts no one.
func TestRunnerTokenSingleUseAndRevoke(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "single-use"})
	once := newToken(t, s, "-uses=1")
	startAdopted(t, s, testcluster.RunnerOptions{Name: "first", Token: once})
	second := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "second", Servers: []string{s.Addr()}, Token: once})
	waitLog(t, second.Process, "used up")
	if _, err := second.Listed(s); err == nil {
		t.Errorf("a runner refused by its token is listed")
	}

	list := cliOK(t, s, "runner", "token", "list")
	if !strings.Contains(list.stdout, "0 of 1 uses left") {
		t.Errorf("token list does not show the used-up token: %v", list)
	}
	resp, err := s.Client().Runners.ListRunnerTokens(context.Background(), connect.NewRequest(&pb.ListRunnerTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range resp.Msg.Tokens {
		if len(tok.Hash) > 0 {
			t.Errorf("token %s is listed with its hash", tok.Id)
		}
		if strings.Contains(list.stdout, once) {
			t.Errorf("token list shows a token's secret")
		}
	}

	many := newToken(t, s)
	var manyID string
	for _, tok := range cliTokens(t, s) {
		if tok.MaxUses == 0 {
			manyID = tok.Id
		}
	}
	cliOK(t, s, "runner", "token", "revoke", manyID)
	third := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "third", Servers: []string{s.Addr()}, Token: many})
	waitLog(t, third.Process, "unknown or revoked")
}

func cliTokens(t *testing.T, s *testcluster.Server) []*pb.RunnerToken {
	t.Helper()
	resp, err := s.Client().Runners.ListRunnerTokens(context.Background(), connect.NewRequest(&pb.ListRunnerTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Tokens
}

// A token bound to labels refuses a runner without them; one bound to
// projects limits the runners it adopts to them.
func TestRunnerTokenBindings(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "bound"})
	tok := newToken(t, s, "-label=env=prod", "-project=web")
	plain := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "unlabelled", Servers: []string{s.Addr()}, Token: tok})
	waitLog(t, plain.Process, "bound to label env=prod")
	prod := startAdopted(t, s, testcluster.RunnerOptions{Name: "prod", Token: tok, Labels: map[string]string{"env": "prod", "os": "linux"}})
	x, err := prod.Listed(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(x.Projects, ",") != "web" {
		t.Errorf("runner adopted by a token bound to project web serves %v", x.Projects)
	}
}

// A rejected runner's stream closes at once on whichever server holds it
// (here a follower), its job is handed back, and its reconnects are
// refused.
func TestRejectClosesStreamOnFollower(t *testing.T) {
	e2e(t)
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "reject"})
	leader := c.WaitForLeader(runnerWait)
	var follower *testcluster.Server
	for _, s := range c.Servers {
		if s != leader {
			follower = s
			break
		}
	}
	r := startAdopted(t, follower, testcluster.RunnerOptions{Name: "rejected"})
	rec := recordDir(t)
	project := writeFile(t, "outpost.hcl", `project = "long"

job "sleep" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
      sleep 300
    EOT
  }
}
`)
	id := runDetached(t, leader, "-file", project, "sleep")
	waitStatus(t, leader, id, rpc.JobRunning)
	cliOK(t, leader, "runner", "reject", r.ID())
	waitLog(t, r.Process, "was rejected by an operator")
	j := waitJob(t, leader, id, "handed back", func(j *pb.Job) bool { return j.Status != rpc.JobRunning && j.Status != rpc.JobAssigned })
	t.Logf("observation: after reject the job is %s (%s)", j.Status, j.StatusReason)
	r.Kill()
	if err := r.TryRestart(); err != nil {
		t.Fatal(err)
	}
	waitLogN(t, r.Process, "was rejected by an operator", 2)
	if x := r.WaitListed(leader, "rejected", "", runnerWait); x.Status != rpc.RunnerRejected {
		t.Errorf("runner is %s after its refused reconnect", x.Status)
	}
}
