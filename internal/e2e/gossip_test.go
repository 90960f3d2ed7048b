package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Gossip encryption tests (issue 15): rotation of the cluster's gossip key
// with `operator gossip keyring`, applied by servers through Raft and by
// runners over their stream.

// keygen makes a key with `operator keygen`.
func keygen(t *testing.T, s *testcluster.Server) string {
	t.Helper()
	key := strings.TrimSpace(cliOK(t, s, "operator", "keygen").stdout)
	if len(key) != 44 {
		t.Fatalf("operator keygen printed %q, want 32 bytes in base64", key)
	}
	return key
}

// keyring lists the keyring through the API.
func keyring(t *testing.T, s *testcluster.Server) *pb.GossipKeyringResponse {
	t.Helper()
	resp, err := s.Client().Keyring.GossipKeyring(context.Background(), connect.NewRequest(&pb.GossipKeyringRequest{Op: "list"}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

// waitKeyring waits until the keyring is exactly keys, primary first, and
// every live member (servers, runners) holds each of them.
func waitKeyring(t *testing.T, s *testcluster.Server, runners uint32, keys ...string) {
	t.Helper()
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		k := keyring(t, s)
		if len(k.Keys) != len(keys) || k.Runners != runners {
			return false, fmt.Sprintf("keyring has %d keys and %d runners, want %d and %d: %v", len(k.Keys), k.Runners, len(keys), runners, k)
		}
		for _, c := range k.Keys {
			want := -1
			for i, key := range keys {
				if key == c.Key {
					want = i
				}
			}
			if want < 0 || c.Primary != (want == 0) || c.Servers != k.Servers || c.Runners != k.Runners {
				return false, fmt.Sprintf("keyring is %v; want keys %v (the first primary), each held by every member", k, keys)
			}
		}
		return true, ""
	})
}

// alive reports whether gossip on s shows a member named name alive.
func alive(t *testing.T, s *testcluster.Server, name string) (bool, string) {
	t.Helper()
	resp, err := s.Client().Operator.Members(context.Background(), connect.NewRequest(&pb.MembersRequest{}))
	if err != nil {
		return false, err.Error()
	}
	var seen []string
	for _, m := range resp.Msg.Members {
		seen = append(seen, m.Name+":"+m.Status)
		if m.Name == name && m.Status == "alive" {
			return true, ""
		}
	}
	return false, fmt.Sprintf("member %s is not alive in gossip: %v", name, seen)
}

// Install a new key, use it, remove the old one: every member follows,
// a runner restarted with the old -encrypt keeps the new key from its
// data dir, a new agent with only the new key joins gossip, and one with
// only the old key does not.
func TestGossipKeyRotation(t *testing.T) {
	e2e(t)
	old := testcluster.GossipKey
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "rotate", GossipKey: old})
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "rotating", Gossip: true, GossipKey: old})
	waitKeyring(t, s, 1, old)

	fresh := keygen(t, s)
	cliOK(t, s, "operator", "gossip", "keyring", "-install", fresh)
	waitKeyring(t, s, 1, old, fresh)
	if res := cli(t, s, "operator", "gossip", "keyring", "-remove", old); res.code == 0 || !strings.Contains(res.stderr, "primary") {
		t.Errorf("removing the primary key was not refused as such: %v", res)
	}
	cliOK(t, s, "operator", "gossip", "keyring", "-use", fresh)
	waitKeyring(t, s, 1, fresh, old)
	cliOK(t, s, "operator", "gossip", "keyring", "-remove", old)
	waitKeyring(t, s, 1, fresh)
	list := cliOK(t, s, "operator", "gossip", "keyring", "-list")
	if !strings.Contains(list.stdout, fresh) || strings.Contains(list.stdout, old) {
		t.Errorf("keyring -list after the rotation: %v", list)
	}

	// The runner keeps the new keyring, and it is private.
	path := filepath.Join(r.DataDir(), "gossip-keyring.json")
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		b, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(b), fresh) && !strings.Contains(string(b), old),
			fmt.Sprintf("%s holds %s (%v), want the new key only", path, b, err)
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v (%v), want 0600", path, fi.Mode(), err)
	}
	// Restarted with the old -encrypt, it speaks the new key.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r.Restart()
	r.WaitListed(s, "adopted", "ready", runnerWait)
	testcluster.WaitFor(t, runnerWait, func() (bool, string) { return alive(t, s, r.ID()) })

	// Pending runners get no keyring over their stream: what they hold is
	// what they were started with.
	good := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "new-key", Servers: []string{s.Addr()}, Gossip: true, GossipKey: fresh})
	bad := testcluster.StartRunner(t, testcluster.RunnerOptions{Name: "old-key", Servers: []string{s.Addr()}, Gossip: true, GossipKey: old})
	good.WaitListed(s, "pending", "ready", runnerWait)
	bad.WaitListed(s, "pending", "ready", runnerWait)
	testcluster.WaitFor(t, runnerWait, func() (bool, string) { return alive(t, s, good.ID()) })
	waitLog(t, bad.Process, "cannot reach the servers' gossip")
	if ok, _ := alive(t, s, bad.ID()); ok {
		t.Errorf("a runner with only the removed key joined gossip")
	}
}

// Outside -dev an agent without a gossip key does not start, and says
// how to make one.
func TestGossipKeyRequired(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "keyed"})
	for _, args := range [][]string{
		append([]string{"agent", "-server", "-data-dir=" + t.TempDir()}, testcluster.ServerTLS(t).Args()...),
		append([]string{"runner", "agent", "-server=" + s.Addr(), "-data-dir=" + t.TempDir()}, testcluster.RunnerTLS(t).Args()...),
	} {
		res := cli(t, s, args...)
		if res.code == 0 || !strings.Contains(res.stderr, "operator keygen") {
			t.Errorf("%v: want a refusal naming `outpost operator keygen`", res)
		}
	}
}
