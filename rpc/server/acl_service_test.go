package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/agent"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// TestBootstrapOnce: a second bootstrap is refused with the reset index;
// written to the leader's acl-bootstrap-reset, it allows exactly one more.
func TestBootstrapOnce(t *testing.T) {
	var dataDir string
	a := agent.TestServer(t, func(c *agent.Config) { dataDir = c.DataDir })
	first := agent.BootstrapTestACL(t, a)
	c, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t))
	ctx := context.Background()
	_, err := c.ACL.Bootstrap(ctx, connect.NewRequest(&pb.ACLBootstrapRequest{}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "acl-bootstrap-reset") {
		t.Fatalf("second bootstrap: %v, want failed_precondition naming the reset file", err)
	}
	msg := err.Error()
	i := strings.Index(msg, "reset index: ")
	if i < 0 {
		t.Fatalf("no reset index in %q", msg)
	}
	idx := msg[i+len("reset index: "):]
	idx = idx[:strings.IndexByte(idx, ')')]
	if _, err := strconv.ParseUint(idx, 10, 64); err != nil {
		t.Fatalf("reset index %q: %v", idx, err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "acl-bootstrap-reset"), []byte(idx+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ACL.Bootstrap(ctx, connect.NewRequest(&pb.ACLBootstrapRequest{}))
	if err != nil {
		t.Fatalf("bootstrap after reset: %v", err)
	}
	if resp.Msg.Secret == "" || resp.Msg.Secret == first || !resp.Msg.Token.Management {
		t.Fatalf("bootstrap after reset gave %v", resp.Msg)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "acl-bootstrap-reset")); !os.IsNotExist(err) {
		t.Errorf("reset file still there after its bootstrap: %v", err)
	}
	if _, err := c.ACL.Bootstrap(ctx, connect.NewRequest(&pb.ACLBootstrapRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("third bootstrap: %v, want refused", err)
	}
	// Both management tokens work.
	for _, s := range []string{first, resp.Msg.Secret} {
		mc, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t), rpc.WithToken(s))
		if _, err := mc.ACL.ListTokens(ctx, connect.NewRequest(&pb.ListTokensRequest{})); err != nil {
			t.Errorf("management token: %v", err)
		}
	}
}

// TestLoginLogoutAndThrottle: a user logs in for a token carrying the
// user's policies; logout revokes it; five wrong passwords lock the user
// out (ResourceExhausted with a retry-after) while the right one resets
// the counter; and the source address has its own limit across users.
func TestLoginLogoutAndThrottle(t *testing.T) {
	a := agent.TestServer(t, nil)
	mgmt := agent.BootstrapTestACL(t, a)
	ctx := context.Background()
	c, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t), rpc.WithToken(mgmt))
	if _, err := c.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: "ops", Rules: `operator { policy = "read" }`})); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "bob", "cid", "dan"} {
		if _, err := c.ACL.CreateUser(ctx, connect.NewRequest(&pb.CreateUserRequest{Name: u, Policies: []string{"ops"}, Password: "password-" + u})); err != nil {
			t.Fatal(err)
		}
	}
	users, err := c.ACL.ListUsers(ctx, connect.NewRequest(&pb.ListUsersRequest{}))
	if err != nil || len(users.Msg.Users) != 4 || len(users.Msg.Users[0].PasswordHash) != 0 {
		t.Fatalf("list users: %v %v (hashes must not be listed)", users, err)
	}
	anon, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t))
	login := func(user, pw string) (*pb.LoginResponse, error) {
		r, err := anon.ACL.Login(ctx, connect.NewRequest(&pb.LoginRequest{User: user, Password: pw}))
		if err != nil {
			return nil, err
		}
		return r.Msg, nil
	}
	got, err := login("ann", "password-ann")
	if err != nil {
		t.Fatal(err)
	}
	if got.Token.User != "ann" || got.Token.ExpiresAt == nil {
		t.Fatalf("login token %v: want ann's, expiring", got.Token)
	}
	ann, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t), rpc.WithToken(got.Secret))
	if _, err := ann.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})); err != nil {
		t.Fatalf("ann's policy: %v", err)
	}
	if _, err := ann.ACL.ListTokens(ctx, connect.NewRequest(&pb.ListTokensRequest{})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("ann lists tokens: %v, want permission denied", err)
	}
	self, err := ann.ACL.GetToken(ctx, connect.NewRequest(&pb.GetTokenRequest{AccessorId: "self"}))
	if err != nil || self.Msg.Token.AccessorId != got.Token.AccessorId {
		t.Fatalf("token self: %v %v", self, err)
	}
	if _, err := ann.ACL.Logout(ctx, connect.NewRequest(&pb.LogoutRequest{})); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("after logout: %v, want unauthenticated", err)
	}

	// Per user: four failures, then the right password resets the count.
	for i := 0; i < 4; i++ {
		if _, err := login("bob", "wrong-password"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if _, err := login("bob", "password-bob"); err != nil {
		t.Fatalf("right password after 4 failures: %v", err)
	}
	for i := 0; i < 4; i++ {
		_, _ = login("bob", "wrong-password")
	}
	if _, err := login("bob", "password-bob"); err != nil {
		t.Fatalf("the counter was not reset by the success: %v", err)
	}
	for i := 0; i < 5; i++ {
		_, _ = login("bob", "wrong-password")
	}
	_, err = login("bob", "password-bob")
	var ce *connect.Error
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "retry after") {
		t.Fatalf("after 5 failures: %v, want resource_exhausted with a retry-after", err)
	}
	if errorsAs(err, &ce) && ce.Meta().Get("Retry-After") == "" {
		t.Errorf("no Retry-After header")
	}
	// Per address: failures spread over users add up for the address:
	// bob's 13 above (a success resets only bob's own count), and 7 more.
	for i := 0; i < 7; i++ {
		u := []string{"cid", "dan"}[i%2]
		if _, err := login(u, "wrong-password"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("failure %d by %s: %v", 14+i, u, err)
		}
	}
	if _, err := login("ann", "password-ann"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("address over its limit: %v, want resource_exhausted", err)
	}
}

func errorsAs(err error, ce **connect.Error) bool { return errors.As(err, ce) }

// TestFollowerKnowsANewToken: a token made on the leader works on a
// follower at once (one read barrier on an unknown token), and a revoked
// one stops working there.
func TestFollowerKnowsANewToken(t *testing.T) {
	servers := agent.TestCluster(t, 3, nil)
	mgmt := agent.BootstrapTestACL(t, servers...)
	leader := agent.WaitForLeader(t, servers...)
	var follower *agent.Agent
	for _, s := range servers {
		if s != leader {
			follower = s
		}
	}
	ctx := context.Background()
	lc, _ := rpc.NewClient(leader.URL(), agent.TestHTTPClient(t), rpc.WithToken(mgmt))
	if _, err := lc.ACL.UpsertPolicy(ctx, connect.NewRequest(&pb.UpsertPolicyRequest{Name: "ops", Rules: `operator { policy = "read" }`})); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		resp, err := lc.ACL.CreateToken(ctx, connect.NewRequest(&pb.CreateTokenRequest{Name: "new", Policies: []string{"ops"}}))
		if err != nil {
			t.Fatal(err)
		}
		fc, _ := rpc.NewClient(follower.URL(), agent.TestHTTPClient(t), rpc.WithToken(resp.Msg.Secret))
		if _, err := fc.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})); err != nil {
			t.Fatalf("token %d on the follower right after its creation: %v", i, err)
		}
		if _, err := lc.ACL.RevokeToken(ctx, connect.NewRequest(&pb.RevokeTokenRequest{AccessorId: resp.Msg.Token.AccessorId})); err != nil {
			t.Fatal(err)
		}
		// The follower refuses it once it has applied the revocation
		// (it checks tokens against its own replica, without a barrier).
		testwait.For(t, 10*time.Second, func() (bool, error) {
			_, err := fc.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{}))
			if connect.CodeOf(err) == connect.CodeUnauthenticated {
				return true, nil
			}
			return false, fmt.Errorf("revoked token %d on the follower: %v, want unauthenticated", i, err)
		})
	}
}

// TestACLsDisabled: with acl { enabled = false } every call goes through
// without a token, and bootstrap and login say there is nothing to do.
func TestACLsDisabled(t *testing.T) {
	a := agent.TestServer(t, func(c *agent.Config) { c.ACLEnabled = false })
	c, _ := rpc.NewClient(a.URL(), agent.TestHTTPClient(t))
	ctx := context.Background()
	if _, err := c.Operator.RaftPeers(ctx, connect.NewRequest(&pb.RaftPeersRequest{})); err != nil {
		t.Errorf("operator call without a token: %v", err)
	}
	if _, err := c.Projects.ListProjects(ctx, connect.NewRequest(&pb.ListProjectsRequest{})); err != nil {
		t.Errorf("list without a token: %v", err)
	}
	if _, err := c.ACL.Bootstrap(ctx, connect.NewRequest(&pb.ACLBootstrapRequest{})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("bootstrap with ACLs off: %v, want failed_precondition", err)
	}
	if _, err := c.ACL.Login(ctx, connect.NewRequest(&pb.LoginRequest{User: "x", Password: "y"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("login with ACLs off: %v, want failed_precondition", err)
	}
}
