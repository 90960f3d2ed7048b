package audit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/acl"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

func TestObjectAndReads(t *testing.T) {
	for _, tc := range []struct {
		procedure string
		msg       proto.Message
		object    string
		read      bool
	}{
		{"/outpost.v1.JobService/SubmitJob", &pb.SubmitJobRequest{Project: "web", Job: "deploy", Variables: map[string]string{"pw": "s3cret"}}, "project=web job=deploy", false},
		{"/outpost.v1.JobService/CancelJob", &pb.CancelJobRequest{Id: "j-1"}, "id=j-1", false},
		{"/outpost.v1.RunnerService/RunnerAction", &pb.RunnerActionRequest{Id: "r-1", Action: "adopt"}, "id=r-1 action=adopt", false},
		{"/outpost.v1.RunnerService/CreateRunnerToken", &pb.CreateRunnerTokenRequest{Description: "fleet"}, "", false},
		{"/outpost.v1.KeyringService/GossipKeyring", &pb.GossipKeyringRequest{Op: "install", Key: "a2V5a2V5a2V5a2V5a2V5aw=="}, "op=install", false},
		{"/outpost.v1.KeyringService/GossipKeyring", &pb.GossipKeyringRequest{Op: "list"}, "op=list", true},
		{"/outpost.v1.JobService/GetJob", &pb.GetJobRequest{Id: "j-1"}, "id=j-1", true},
		{"/outpost.v1.JobService/ReadLogs", &pb.ReadLogsRequest{}, "", true},
		{"/outpost.v1.OperatorService/RaftPeers", &pb.RaftPeersRequest{}, "", true},
		{"/outpost.v1.AgentService/Status", &pb.StatusRequest{}, "", true},
	} {
		if got := Object(tc.msg); got != tc.object {
			t.Errorf("%s: object %q, want %q", tc.procedure, got, tc.object)
		}
		if got := isRead(tc.procedure, tc.msg); got != tc.read {
			t.Errorf("%s: read %v, want %v", tc.procedure, got, tc.read)
		}
	}
}

func TestLogWritesAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "audit.log")
	l, err := Open(path, "s1", hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi, err)
	}
	i := Interceptor(l)
	call := i.WrapUnary(func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		acl.Resolved(ctx, acl.Identity{AccessorID: "acc-1"})
		if req.Any().(*pb.CancelJobRequest).Id == "j-bad" {
			return nil, connect.NewError(connect.CodePermissionDenied, errors.New("no"))
		}
		return connect.NewResponse(&pb.CancelJobResponse{}), nil
	})
	read := i.WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("who"))
	})
	ctx := context.Background()
	// connect requests made here carry no procedure; wrap one that does.
	if _, err := call(ctx, req("/outpost.v1.JobService/CancelJob", &pb.CancelJobRequest{Id: "j-1"})); err != nil {
		t.Fatal(err)
	}
	_ = os.Rename(path, path+".1")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	_, _ = call(ctx, req("/outpost.v1.JobService/CancelJob", &pb.CancelJobRequest{Id: "j-bad"}))
	_, _ = read(ctx, req("/outpost.v1.JobService/GetJob", &pb.GetJobRequest{Id: "j-2"}))

	h := Middleware(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/operator/snapshot", nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPut, "/v1/operator/snapshot", nil))

	first := lines(t, path+".1")
	second := lines(t, path)
	if len(first) != 1 || first[0].Result != "ok" || first[0].Who != "token:acc-1" || first[0].Object != "id=j-1" || first[0].Node != "s1" {
		t.Errorf("before reopen: %+v", first)
	}
	want := []string{"permission_denied: no", "unauthenticated: who", "http 403: Forbidden"}
	if len(second) != len(want) {
		t.Fatalf("after reopen: %+v, want %d lines", second, len(want))
	}
	for i, w := range want {
		if second[i].Result != w {
			t.Errorf("line %d result %q, want %q", i, second[i].Result, w)
		}
	}
	if second[2].Method != "PUT /v1/operator/snapshot" {
		t.Errorf("HTTP line method %q", second[2].Method)
	}
}

func lines(t *testing.T, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %q: %v", path, line, err)
		}
		out = append(out, r)
	}
	return out
}

// req is a request whose Spec names procedure, as a handler sees it.
func req[T any](procedure string, msg *T) connect.AnyRequest {
	return &specRequest{AnyRequest: connect.NewRequest(msg), spec: connect.Spec{Procedure: procedure}}
}

type specRequest struct {
	connect.AnyRequest
	spec connect.Spec
}

func (r *specRequest) Spec() connect.Spec { return r.spec }
