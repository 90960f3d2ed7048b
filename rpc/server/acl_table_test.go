package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/agent"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// procedures are every method of every service of the schema, as
// "/package.Service/Method", read from the registered file descriptors so
// a method added to any .proto file is in the list.
func procedures(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFilesByPackage("outpost.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				m := s.Methods().Get(j)
				out["/"+string(s.FullName())+"/"+string(m.Name())] = m
			}
		}
		return true
	})
	if len(out) < 30 {
		t.Fatalf("found only %d methods in the schema", len(out))
	}
	return out
}

// TestEveryMethodHasARule: the table is complete, and names no method
// the schema lacks.
func TestEveryMethodHasARule(t *testing.T) {
	rules := rpcserver.MethodRules()
	procs := procedures(t)
	for p := range procs {
		if _, ok := rules[p]; !ok {
			t.Errorf("%s has no row in rpc/server's methodRules: add one (acl_table.go)", p)
		}
	}
	for p := range rules {
		if _, ok := procs[p]; !ok {
			t.Errorf("methodRules names %s, which the schema does not have", p)
		}
	}
}

// call makes one request to procedure with an empty message over the
// connect protocol's JSON form, as curl would, and returns the error code
// ("" for none). Streaming methods are sent one enveloped message.
func call(t *testing.T, hc *http.Client, base, procedure string, m protoreflect.MethodDescriptor, token string) string {
	t.Helper()
	ctype, body := "application/json", []byte("{}")
	if m.IsStreamingServer() || m.IsStreamingClient() {
		ctype = "application/connect+json"
		body = binary.BigEndian.AppendUint32([]byte{0}, 2)
		body = append(body, "{}"...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Connect-Protocol-Version", "1")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e struct {
		Code  string `json:"code"`
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if ctype == "application/json" {
		if resp.StatusCode == http.StatusOK {
			return ""
		}
		_ = json.Unmarshal(raw, &e)
		return e.Code
	}
	// The last envelope of a stream is its end, with the error if any.
	for len(raw) >= 5 {
		n := binary.BigEndian.Uint32(raw[1:5])
		if int(n) > len(raw)-5 {
			break
		}
		if raw[0]&2 != 0 {
			_ = json.Unmarshal(raw[5:5+n], &e)
			if e.Error != nil {
				return e.Error.Code
			}
			return ""
		}
		raw = raw[5+n:]
	}
	return ""
}

// weakerPolicy grants everything but what rule needs: every other area at
// its top level, and rule's own area one level below.
func weakerPolicy(r rpcserver.Rule) string {
	lv := map[acl.Area]acl.Level{acl.AreaProject: acl.Admin, acl.AreaRunner: acl.Admin, acl.AreaOperator: acl.Write, acl.AreaACL: acl.Write}
	lv[r.Area] = r.Level - 1
	if r.Area == acl.AreaRunner && lv[r.Area] < acl.Register {
		lv[r.Area] = acl.None
	}
	var b strings.Builder
	if l := lv[acl.AreaProject]; l > acl.None {
		fmt.Fprintf(&b, "project \"*\" { policy = %q }\n", acl.LevelName(acl.AreaProject, l))
	}
	if l := lv[acl.AreaRunner]; l > acl.None {
		fmt.Fprintf(&b, "runner { policy = %q }\n", acl.LevelName(acl.AreaRunner, l))
	}
	if l := lv[acl.AreaOperator]; l > acl.None {
		fmt.Fprintf(&b, "operator { policy = %q }\n", acl.LevelName(acl.AreaOperator, l))
	}
	if l := lv[acl.AreaACL]; l > acl.None {
		fmt.Fprintf(&b, "acl = %q\n", acl.LevelName(acl.AreaACL, l))
	}
	return b.String()
}

// TestEveryMethodRefusesMissingAndWeakTokens starts a real server with
// ACLs on and, for every method of the schema, checks that a call without
// a token and one with a token that has everything but the capability the
// table names are refused with the right code, and that the management
// token is let through.
func TestEveryMethodRefusesMissingAndWeakTokens(t *testing.T) {
	a := agent.TestServer(t, nil)
	mgmt := agent.BootstrapTestACL(t, a)
	hc := agent.TestHTTPClient(t)
	c, err := rpc.NewClient(a.URL(), hc, rpc.WithToken(mgmt))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	weak := map[string]string{} // policy text -> secret
	tokenFor := func(rules string) string {
		if s, ok := weak[rules]; ok {
			return s
		}
		name := fmt.Sprintf("weak-%d", len(weak))
		if _, err := c.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: name, Rules: rules})); err != nil {
			t.Fatalf("policy %s:\n%s\n%v", name, rules, err)
		}
		resp, err := c.ACL.CreateToken(ctx, connect.NewRequest(&pb.CreateTokenRequest{Name: name, Policies: []string{name}}))
		if err != nil {
			t.Fatal(err)
		}
		weak[rules] = resp.Msg.Secret
		return resp.Msg.Secret
	}
	rules := rpcserver.MethodRules()
	for proc, m := range procedures(t) {
		r := rules[proc]
		t.Run(strings.TrimPrefix(proc, "/outpost.v1."), func(t *testing.T) {
			switch r.Access {
			case rpcserver.AccessOpen, rpcserver.AccessCertificate, rpcserver.AccessLogin, rpcserver.AccessBootstrap:
				// No token is asked for: TLS gates certificates; login and
				// bootstrap have tests of their own.
				return
			case rpcserver.AccessToken:
				if got := call(t, hc, a.URL(), proc, m, ""); got != "unauthenticated" {
					t.Errorf("no token: %q, want unauthenticated", got)
				}
			default:
				if got := call(t, hc, a.URL(), proc, m, ""); got != "permission_denied" {
					t.Errorf("no token: %q, want permission_denied", got)
				}
				p := weakerPolicy(r)
				if p == "" {
					p = "operator { policy = \"read\" }\n"
					if r.Area == acl.AreaOperator {
						p = "runner { policy = \"register\" }\n"
					}
				}
				if got := call(t, hc, a.URL(), proc, m, tokenFor(p)); got != "permission_denied" {
					t.Errorf("token with\n%s: %q, want permission_denied", p, got)
				}
			}
			if proc == "/outpost.v1.ACLService/Logout" {
				return // would revoke the management token
			}
			if got := call(t, hc, a.URL(), proc, m, mgmt); got == "permission_denied" || got == "unauthenticated" {
				t.Errorf("management token: %q", got)
			}
		})
	}
	t.Run("unknown token", func(t *testing.T) {
		if got := call(t, hc, a.URL(), "/outpost.v1.JobService/ListJobs", procedures(t)["/outpost.v1.JobService/ListJobs"], "opt_nope"); got != "unauthenticated" {
			t.Errorf("unknown token: %q, want unauthenticated", got)
		}
	})
	t.Run("http endpoints", func(t *testing.T) {
		get := func(token string) int {
			req, _ := http.NewRequest(http.MethodGet, a.URL()+"/v1/operator/snapshot", nil)
			if token != "" {
				req.Header.Set(rpc.TokenHeader, token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := get(""); got != http.StatusForbidden {
			t.Errorf("snapshot without a token: %d", got)
		}
		if got := get(tokenFor("operator { policy = \"read\" }\n")); got != http.StatusForbidden {
			t.Errorf("snapshot with operator read: %d", got)
		}
		if got := get(mgmt); got != http.StatusOK {
			t.Errorf("snapshot with the management token: %d", got)
		}
	})
}

// TestTokenExpires: a token with a TTL is refused once it has expired,
// and the leader's GC removes it.
func TestTokenExpires(t *testing.T) {
	a := agent.TestServer(t, nil)
	mgmt := agent.BootstrapTestACL(t, a)
	c, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t), rpc.WithToken(mgmt))
	ctx := context.Background()
	if _, err := c.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: "ops", Rules: `operator { policy = "read" }`})); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ACL.CreateToken(ctx, connect.NewRequest(&pb.CreateTokenRequest{Name: "short", Policies: []string{"ops"}, Ttl: durationpb.New(2 * time.Second)}))
	if err != nil {
		t.Fatal(err)
	}
	short, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t), rpc.WithToken(resp.Msg.Secret))
	if _, err := short.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	expires := resp.Msg.Token.ExpiresAt.AsTime()
	testwait.For(t, 30*time.Second, func() (bool, error) {
		if time.Now().Before(expires) {
			return false, fmt.Errorf("token not expired yet")
		}
		return true, nil
	})
	_, err = short.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v, want unauthenticated, expired", err)
	}
	// The leader's GC deletes it through the log (every 10s).
	testwait.For(t, 60*time.Second, func() (bool, error) {
		_, err := c.ACL.GetToken(ctx, connect.NewRequest(&pb.GetTokenRequest{AccessorId: resp.Msg.Token.AccessorId}))
		if connect.CodeOf(err) == connect.CodeNotFound {
			return true, nil
		}
		return false, fmt.Errorf("expired token still stored: %v", err)
	})
}

// TestDocsHoldTheMethodTable: website/acl.md prints the table as it is.
func TestDocsHoldTheMethodTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "website", "acl.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := rpcserver.MethodTable(); !strings.Contains(string(b), want) {
		t.Fatalf("website/acl.md does not hold the method table; replace it with:\n%s", want)
	}
}
