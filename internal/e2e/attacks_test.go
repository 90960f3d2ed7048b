package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// The project the attacker of issue 15 submitted: a root shell that reads
// the runner's secret and lists the Raft store.
const pwnProject = `project = "pwn"
job "pwn" {
  step "shell" {
    script = "cat */runner*; ls -la */raft.db; echo PWNED"
  }
}
`

// The attacks issue 15 was filed with, replayed against a production
// server (TLS and ACLs on, as every non-dev cluster of these tests runs)
// by a caller who can reach the port: with no certificate, with a client
// certificate of the cluster's CA, with a runner's certificate, and with
// none of them over plain HTTP. Each is refused, and the state does not
// change: no job is added or lost, the victim's job keeps its
// environment private, the runner stays adopted.
func TestIssue15AttacksFail(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "target", Runner: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The victim: a job whose environment holds a password.
	victim := writeFile(t, "victim.hcl", `project = "prod"
job "deploy" {
  step "run" {
    command = ["true"]
    env = { DB_PASSWORD = "hunter2-prod" }
  }
}
`)
	id := runDetached(t, s, "-file", victim, "deploy")
	waitFinished(t, s, id)
	before := jobIDs(ctx, t, s.Client())
	runners, err := s.Client().Runners.ListRunners(ctx, connect.NewRequest(&pb.ListRunnersRequest{}))
	if err != nil || len(runners.Msg.Runners) == 0 {
		t.Fatalf("list runners: %v", err)
	}
	runnerID := runners.Msg.Runners[0].Id

	pool := x509.NewCertPool()
	ca, err := os.ReadFile(testcluster.ClientTLS(t).CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	callers := map[string]*http.Client{
		// Trusts the CA, presents nothing: anyone on the network.
		"no certificate": {Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		// An operator's client certificate, but no token.
		"client certificate": testcluster.HTTPClient(t),
		// A runner's certificate, as a compromised edge node has.
		"runner certificate": runnerHTTPClient(t, pool),
	}

	type attack struct {
		name, procedure, body string
		// refused are the codes that count as a refusal.
		refused []string
	}
	// The anonymous caller has a token with no rights: every call is
	// permission_denied, the same before and after the handler would find
	// the object, so nothing tells the caller what exists.
	denied := []string{"permission_denied"}
	attacks := []attack{
		{"submit a root shell", "outpost.v1.JobService/SubmitJob",
			`{"projectSource":"` + base64.StdEncoding.EncodeToString([]byte(pwnProject)) + `","projectFilename":"pwn.hcl","job":"pwn"}`, denied},
		{"read a job and its environment", "outpost.v1.JobService/GetJob", `{"id":"` + id + `"}`, denied},
		{"cancel a job", "outpost.v1.JobService/CancelJob", `{"id":"` + id + `"}`, denied},
		{"delete a job", "outpost.v1.JobService/DeleteJob", `{"id":"` + id + `"}`, denied},
		{"reject the runner", "outpost.v1.RunnerService/RunnerAction", `{"id":"` + runnerID + `","action":"reject"}`, denied},
		{"forget the runner", "outpost.v1.RunnerService/RunnerAction", `{"id":"` + runnerID + `","action":"forget"}`, denied},
		{"adopt a runner", "outpost.v1.RunnerService/RunnerAction", `{"id":"` + runnerID + `","action":"adopt"}`, denied},
		{"mint an adoption token", "outpost.v1.RunnerService/CreateRunnerToken", `{"description":"mine"}`, denied},
		{"remove a Raft peer", "outpost.v1.OperatorService/RemovePeer", `{"id":"target"}`, denied},
		{"write a raw Raft entry", "outpost.v1.ClusterService/Apply", `{"entry":"` + base64.StdEncoding.EncodeToString([]byte{10, 0}) + `"}`, []string{"permission_denied"}},
		{"keep a dead runner alive", "outpost.v1.ClusterService/RunnerHeartbeats", `{"server":"target","runnerIds":["` + runnerID + `"],"silentMs":[0]}`, []string{"permission_denied"}},
		{"make an ACL token", "outpost.v1.ACLService/CreateToken", `{"name":"mine","policies":["global-management"]}`, denied},
		{"bootstrap ACLs again", "outpost.v1.ACLService/Bootstrap", `{}`, []string{"failed_precondition"}},
	}
	for who, hc := range callers {
		for _, a := range attacks {
			code, msg := connectPost(ctx, hc, s.Addr(), a.procedure, a.body)
			ok := false
			for _, c := range a.refused {
				ok = ok || code == c
			}
			if !ok {
				t.Errorf("%s, %s: got %q (%s), want one of %v", who, a.name, code, msg, a.refused)
			} else {
				t.Logf("%s, %s: %s: %s", who, a.name, code, msg)
			}
			if strings.Contains(msg, "hunter2-prod") {
				t.Errorf("%s, %s: the answer holds the victim's password: %s", who, a.name, msg)
			}
		}
		// Reads that list are filtered, not refused: nothing shows.
		code, body := connectPost(ctx, hc, s.Addr(), "outpost.v1.JobService/ListJobs", `{}`)
		if code == "" && strings.Contains(body, id) {
			t.Errorf("%s: ListJobs shows the victim's job: %s", who, body)
		}
		// Rolling the whole state back from a snapshot.
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, s.Addr()+"/v1/operator/snapshot", strings.NewReader("not a snapshot"))
		if resp, err := hc.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: snapshot restore answered %d %s, want 401 or 403", who, resp.StatusCode, b)
			}
		}
	}

	// Plain HTTP gets a clear refusal, not a hang.
	plain := "http://" + strings.TrimPrefix(s.Addr(), "https://")
	resp, err := http.Post(plain+"/outpost.v1.JobService/SubmitJob", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatalf("plain HTTP: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
		t.Errorf("plain HTTP: %d %s, want 400 naming HTTPS", resp.StatusCode, b)
	}

	// Nothing changed: the same jobs, the victim's done, the runner adopted.
	after := jobIDs(ctx, t, s.Client())
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("jobs before %v, after %v", before, after)
	}
	if j := statusJSON(t, s, id); j.Status != "succeeded" {
		t.Errorf("victim job is %s", j.Status)
	}
	r, err := s.Client().Runners.GetRunner(ctx, connect.NewRequest(&pb.GetRunnerRequest{Id: runnerID}))
	if err != nil || r.Msg.Runner.Status != "adopted" {
		t.Errorf("runner after the attacks: %v %v", r, err)
	}
	if strings.Contains(s.Logs(), "PWNED") {
		t.Error("the attacker's shell ran")
	}
}

// connectPost sends one unary connect JSON request, as curl does, and
// returns the connect error code ("" on success) and the answer's body.
func connectPost(ctx context.Context, hc *http.Client, addr, procedure, body string) (code, answer string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, addr+"/"+procedure, strings.NewReader(body))
	if err != nil {
		return "request: " + err.Error(), ""
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "transport: " + err.Error(), ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "", string(b)
	}
	var e struct{ Code, Message string }
	if json.Unmarshal(b, &e) != nil || e.Code == "" {
		return "http " + resp.Status, string(b)
	}
	return e.Code, e.Message
}

// jobIDs lists every job id, newest first.
func jobIDs(ctx context.Context, t *testing.T, c *rpc.Client) []string {
	t.Helper()
	resp, err := c.Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{}))
	if err != nil {
		t.Fatalf("list jobs: %v", err)
	}
	var ids []string
	for _, j := range resp.Msg.Jobs {
		ids = append(ids, j.Id)
	}
	return ids
}

// runnerHTTPClient presents the test runner certificate.
func runnerHTTPClient(t *testing.T, pool *x509.CertPool) *http.Client {
	t.Helper()
	f := testcluster.RunnerTLS(t)
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
}
