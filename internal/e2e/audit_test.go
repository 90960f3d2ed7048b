package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Audit log tests (issue 15): one JSON line per write and per refusal on
// the server that handled it, never a secret; reopened on SIGHUP.

type auditLine struct {
	Time, Who, Source, Method, Object, Result, Node string
}

func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: a line is not JSON: %q", path, sc.Text())
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil || !strings.HasSuffix(l.Time, "Z") {
			t.Errorf("%s: time %q is not RFC 3339 in UTC", path, l.Time)
		}
		out = append(out, l)
	}
	return out
}

// count is how many lines are for method (its last part) with result
// prefix res.
func count(lines []auditLine, method, res string) int {
	n := 0
	for _, l := range lines {
		if strings.HasSuffix(l.Method, "/"+method) && strings.HasPrefix(l.Result, res) {
			n++
		}
	}
	return n
}

func TestAuditLog(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "audited"})
	path := filepath.Join(s.DataDir(), "audit", "audit.log")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log %s: %v (%v), want a file of mode 0600", path, fi, err)
	}
	token := newToken(t, s)
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "audited-runner", Token: token})
	pending := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "to-adopt", Servers: []string{s.Addr()}})
	pending.WaitListed(s, "pending", "", runnerWait)

	const envValue = "audit-env-value-4f1d"
	project := writeFile(t, "outpost.hcl", `project = "audited"

job "sleep" {
  step "s" {
    script = "sleep 300"
    env    = { DB_PASSWORD = "`+envValue+`" }
  }
}
`)
	cliOK(t, s, "project", "apply", "-file", project)
	id := runDetached(t, s, "-project", "audited", "sleep")
	waitStatus(t, s, id, rpc.JobRunning)
	cliOK(t, s, "job", "cancel", id)
	cliOK(t, s, "runner", "adopt", pending.ID())
	// Reads are not recorded.
	cliOK(t, s, "job", "list")
	cliOK(t, s, "runner", "list")
	// Refusals: a bad write, and an impostor's stream.
	if res := cli(t, s, "runner", "drain", "r-nosuchrunner"); res.code == 0 {
		t.Fatalf("draining an unknown runner succeeded: %v", res)
	}
	impostor := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "impostor", Servers: []string{s.Addr()},
		Token: token, DataDir: impostorDir(t, r.ID())})
	waitLog(t, impostor.Process, "registered with a different secret")
	waitStatus(t, s, id, rpc.JobCanceled)

	lines := readAudit(t, path)
	for _, want := range []struct {
		method, result string
		n              int
	}{
		{"CreateRunnerToken", "ok", 1},
		{"ApplyProject", "ok", 1},
		{"SubmitJob", "ok", 1},
		{"CancelJob", "ok", 1},
		{"RunnerAction", "ok", 1},
		{"RunnerAction", "not_found", 1},
		{"GetJob", "", 0},
		{"ListJobs", "", 0},
		{"ListRunners", "", 0},
	} {
		if got := count(lines, want.method, want.result); got != want.n {
			t.Errorf("audit log has %d %s lines with result %q, want %d", got, want.method, want.result, want.n)
		}
	}
	if count(lines, "Connect", "permission_denied") < 1 {
		t.Errorf("the impostor's refused stream is not in the audit log")
	}
	// Calls name the ACL token they came with; runner streams carry none
	// (a runner proves itself by certificate and secret), nor does the
	// harness's ACL bootstrap.
	self, err := s.Client().ACL.GetToken(context.Background(), connect.NewRequest(&pb.GetTokenRequest{AccessorId: "self"}))
	if err != nil {
		t.Fatal(err)
	}
	mgmt := "token:" + self.Msg.Token.AccessorId
	var adopt, cancel, stream bool
	for _, l := range lines {
		who := mgmt
		if strings.HasSuffix(l.Method, "/Connect") || strings.HasSuffix(l.Method, ".ACLService/Bootstrap") {
			who = "anonymous"
		}
		if l.Node != "audited" || l.Who != who || l.Source == "" {
			t.Errorf("line %+v: want node audited, who %s, a source address", l, who)
		}
		adopt = adopt || strings.HasSuffix(l.Method, "/RunnerAction") && l.Object == "id="+pending.ID()+" action=adopt"
		cancel = cancel || strings.HasSuffix(l.Method, "/CancelJob") && strings.Contains(l.Object, id)
		stream = stream || strings.HasSuffix(l.Method, "/Connect") && l.Object == "runner_id="+r.ID() && l.Result == "ok"
	}
	if !adopt || !cancel || !stream {
		t.Errorf("objects missing (adopt %v, cancel %v, runner stream %v):\n%v", adopt, cancel, stream, lines)
	}

	// No secret: the runner's own secret, the adoption token, an env value.
	b, _ := os.ReadFile(path)
	var ident struct{ Secret string }
	raw, err := os.ReadFile(filepath.Join(r.DataDir(), "identity.json"))
	if err != nil || json.Unmarshal(raw, &ident) != nil || ident.Secret == "" {
		t.Fatalf("reading the runner's secret: %v", err)
	}
	for name, secret := range map[string]string{"runner secret": ident.Secret, "adoption token": token, "env value": envValue, "impostor secret": "impostor-secret"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the audit log holds the %s", name)
		}
	}

	// SIGHUP reopens the file: logrotate moved it away.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(s.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		cliOK(t, s, "runner", "drain", "-undo", r.ID())
		_, err := os.Stat(path)
		return err == nil, fmt.Sprintf("no new %s after SIGHUP: %v", path, err)
	})
	if n := count(readAudit(t, path), "RunnerAction", "ok"); n < 1 {
		t.Errorf("the reopened audit log has no line for the write after SIGHUP")
	}
}
