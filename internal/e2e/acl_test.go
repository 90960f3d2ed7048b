package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// aclProject is a one-job project named name that prints a secret-looking
// line, the kind of thing read filtering must keep from other projects.
func aclProject(name string) string {
	return "project = \"" + name + "\"\njob \"hello\" {\n  step \"s\" {\n    command = [\"echo\", \"secret of " + name + "\"]\n    env = { DB_PASSWORD = \"pw-" + name + "\" }\n  }\n}\n"
}

// TestACLReadFiltering: on a real server with ACLs on (the default), a
// token with read on project a only sees a's jobs, logs and project, and
// none of b's; it cannot submit; a call without a token gets nothing.
// Tokens and policies are made with the CLI, as an operator would.
func TestACLReadFiltering(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "acl-read", Runner: true, Capacity: 4})
	ctx := context.Background()
	mgmt := s.Client()
	jobs := map[string]string{}
	for _, p := range []string{"a", "b"} {
		if _, err := mgmt.Projects.ApplyProject(ctx, connect.NewRequest(&pb.ApplyProjectRequest{Source: []byte(aclProject(p))})); err != nil {
			t.Fatal(err)
		}
		resp, err := mgmt.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Project: p, Job: "hello"}))
		if err != nil {
			t.Fatal(err)
		}
		jobs[p] = resp.Msg.Job.Id
	}
	for _, id := range jobs {
		if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded {
			t.Fatalf("job %s: %s (%s)", id, j.Status, j.StatusReason)
		}
	}

	policy := writeFile(t, "a-read.hcl", "project \"a\" { policy = \"read\" }\n")
	if out, errOut, code := s.CLI("acl", "policy", "apply", "a-read", policy); code != 0 {
		t.Fatalf("policy apply: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := s.CLI("acl", "token", "create", "-name", "reader", "-policy", "a-read", "-json")
	if code != 0 {
		t.Fatalf("token create: %d\n%s%s", code, out, errOut)
	}
	var created struct {
		Secret string `json:"secret"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Secret == "" {
		t.Fatalf("token create -json: %v\n%s", err, out)
	}
	reader, err := rpc.NewClientTLS(s.Addr(), nil, testcluster.ClientTLSConfig(t), rpc.WithToken(created.Secret))
	if err != nil {
		t.Fatal(err)
	}

	list, err := reader.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range list.Msg.Jobs {
		if j.Project != "a" {
			t.Errorf("ListJobs shows %s of project %s", j.Id, j.Project)
		}
	}
	if len(list.Msg.Jobs) != 1 {
		t.Errorf("ListJobs: %d jobs, want a's one", len(list.Msg.Jobs))
	}
	if _, err := reader.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: "b"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("ListJobs project=b: %v, want permission denied", err)
	}
	if _, err := reader.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: jobs["a"]})); err != nil {
		t.Errorf("GetJob of a: %v", err)
	}
	_, err = reader.Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: jobs["b"]}))
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), `project "b" read`) {
		t.Errorf("GetJob of b: %v, want permission denied naming project \"b\" read", err)
	}
	for p, want := range map[string]connect.Code{"a": 0, "b": connect.CodePermissionDenied} {
		stream, err := reader.Jobs.ReadLogs(ctx, connect.NewRequest(&pb.ReadLogsRequest{Id: jobs[p]}))
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		for stream.Receive() {
			for _, c := range stream.Msg().Chunks {
				for _, l := range c.Lines {
					// Either form may carry the line (text for valid
					// UTF-8, data for the raw bytes): check both.
					text.WriteString(l.Text)
					text.Write(l.Data)
				}
			}
		}
		if got := connect.CodeOf(stream.Err()); stream.Err() != nil && got != want || stream.Err() == nil && want != 0 {
			t.Errorf("ReadLogs of %s: %v, want code %v", p, stream.Err(), want)
		}
		if p == "b" && strings.Contains(text.String(), "secret") {
			t.Errorf("ReadLogs of b leaked %q", text.String())
		}
		stream.Close()
	}
	projects, err := reader.Projects.ListProjects(ctx, connect.NewRequest(&pb.ListProjectsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(projects.Msg.Projects) != 1 || projects.Msg.Projects[0].Name != "a" {
		t.Errorf("ListProjects = %v, want only a", projects.Msg.Projects)
	}
	if _, err := reader.Projects.GetProject(ctx, connect.NewRequest(&pb.GetProjectRequest{Name: "b"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("GetProject b: %v, want permission denied", err)
	}
	if _, err := reader.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Project: "a", Job: "hello"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("SubmitJob with read only: %v, want permission denied", err)
	}

	// The CLI with the reader's token lists a's job only; without a
	// token it is refused and says how to get one.
	env := append(testcluster.ClientEnv(t), "OUTPOST_ADDR="+s.Addr(), "OUTPOST_TOKEN="+created.Secret)
	out, errOut, code = testcluster.RunCLI(t, testcluster.Binary(t), env, "job", "list")
	if code != 0 || !strings.Contains(out, jobs["a"]) || strings.Contains(out, jobs["b"]) {
		t.Errorf("job list as reader: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = testcluster.RunCLI(t, testcluster.Binary(t), append(testcluster.ClientEnv(t), "OUTPOST_ADDR="+s.Addr(), "XDG_CONFIG_HOME="+t.TempDir()), "job", "list")
	if code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("job list without a token: exit %d, %s", code, errOut)
	}
}

// TestACLLoginLogoutCLI: an operator creates a user (password on stdin),
// the user logs in with the CLI, which stores the token with mode 0600
// and uses it for later commands; logout revokes it and deletes the file.
func TestACLLoginLogoutCLI(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "acl-login"})
	policy := writeFile(t, "ops.hcl", "operator { policy = \"read\" }\nproject \"*\" { policy = \"read\" }\n")
	if out, errOut, code := s.CLI("acl", "policy", "apply", "ops", policy); code != 0 {
		t.Fatalf("policy apply: %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := testcluster.RunCLIInput(t, testcluster.Binary(t), s.Env(), "s3cret-pass\n", "acl", "user", "create", "ann", "-policy", "ops"); code != 0 {
		t.Fatalf("user create: %d\n%s%s", code, out, errOut)
	}
	out, _, code := s.CLI("acl", "user", "list", "-json")
	if code != 0 || !strings.Contains(out, `"ann"`) || strings.Contains(out, "passwordHash") {
		t.Fatalf("user list: %d\n%s", code, out)
	}
	cfg := t.TempDir()
	env := append(testcluster.ClientEnv(t), "OUTPOST_ADDR="+s.Addr(), "XDG_CONFIG_HOME="+cfg)
	if _, errOut, code := testcluster.RunCLIInput(t, testcluster.Binary(t), env, "wrong-pass\n", "login", "-user", "ann"); code == 0 || !strings.Contains(errOut, "login failed") {
		t.Fatalf("login with a wrong password: exit %d, %s", code, errOut)
	}
	if out, errOut, code := testcluster.RunCLIInput(t, testcluster.Binary(t), env, "s3cret-pass\n", "login", "-user", "ann"); code != 0 {
		t.Fatalf("login: %d\n%s%s", code, out, errOut)
	}
	tokenFile := filepath.Join(cfg, "outpost", "token")
	fi, err := os.Stat(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o, want 600", fi.Mode().Perm())
	}
	out, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, "acl", "token", "info", "-self")
	if code != 0 || !strings.Contains(out, "User:        ann") {
		t.Fatalf("token info -self with the stored token: %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, "members"); code != 0 {
		t.Fatalf("members with ann's token: %d %s", code, errOut)
	}
	secret, _ := os.ReadFile(tokenFile)
	if out, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, "logout"); code != 0 {
		t.Fatalf("logout: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(tokenFile); !os.IsNotExist(err) {
		t.Errorf("token file after logout: %v", err)
	}
	ctx := context.Background()
	c, _ := rpc.NewClientTLS(s.Addr(), nil, testcluster.ClientTLSConfig(t), rpc.WithToken(strings.TrimSpace(string(secret))))
	if _, err := c.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("logged-out token: %v, want unauthenticated", err)
	}
	out, _, _ = s.CLI("acl", "token", "list")
	if strings.Contains(out, "login: ann") {
		t.Errorf("ann's login token still listed:\n%s", out)
	}
	// The audit log has the logins and user changes, and never a
	// password or a secret.
	audit, err := os.ReadFile(filepath.Join(s.DataDir(), "audit", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secretText := range []string{"s3cret-pass", "wrong-pass", strings.TrimSpace(string(secret)), s.Token()} {
		if strings.Contains(string(audit), secretText) {
			t.Errorf("the audit log holds a secret (%.6s…)", secretText)
		}
	}
	for _, method := range []string{"ACLService/Login", "ACLService/CreateUser", "ACLService/Logout"} {
		if !strings.Contains(string(audit), method) {
			t.Errorf("the audit log has no %s line", method)
		}
	}
}

// TestACLTokenTTLFromCLI: a token made with -ttl 2s works, then is refused
// as expired, by the CLI.
func TestACLTokenTTLFromCLI(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "acl-ttl"})
	policy := writeFile(t, "ops.hcl", "operator { policy = \"read\" }\n")
	if out, errOut, code := s.CLI("acl", "policy", "apply", "ops", policy); code != 0 {
		t.Fatalf("policy apply: %d\n%s%s", code, out, errOut)
	}
	out, errOut, code := s.CLI("acl", "token", "create", "-name", "short", "-policy", "ops", "-ttl", "2s", "-json")
	if code != 0 {
		t.Fatalf("token create: %d\n%s%s", code, out, errOut)
	}
	var created struct {
		Secret string `json:"secret"`
		Token  struct {
			ExpiresAt time.Time `json:"expiresAt"`
		} `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Token.ExpiresAt.IsZero() {
		t.Fatalf("token create -json: %v\n%s", err, out)
	}
	env := append(testcluster.ClientEnv(t), "OUTPOST_ADDR="+s.Addr(), "OUTPOST_TOKEN="+created.Secret)
	if _, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, "members"); code != 0 {
		t.Fatalf("members with a fresh token: %d %s", code, errOut)
	}
	testcluster.WaitFor(t, 30*time.Second, func() (bool, string) {
		return !time.Now().Before(created.Token.ExpiresAt), "token not expired yet"
	})
	if _, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, "members"); code == 0 || !strings.Contains(errOut, "expired") {
		t.Fatalf("members with an expired token: exit %d, %s", code, errOut)
	}
}
