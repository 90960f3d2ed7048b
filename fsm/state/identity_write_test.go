package state

import (
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Keyring changes follow the rules (install before use, never remove the
// primary), and each one wakes a watcher.
func TestGossipKeyring(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op, key string
		fails   bool
		keys    int
		primary string
	}{
		{KeyringInit, "a", false, 1, "a"},
		{KeyringInit, "b", false, 1, "a"},
		{KeyringUse, "b", true, 1, "a"},
		{KeyringInstall, "b", false, 2, "a"},
		{KeyringRemove, "a", true, 2, "a"},
		{KeyringUse, "b", false, 2, "b"},
		{KeyringRemove, "a", false, 1, "b"},
		{KeyringRemove, "a", true, 1, "b"},
		{"bogus", "a", true, 1, "b"},
	}
	for i, st := range steps {
		ws := memdb.NewWatchSet()
		before := s.GossipKeyring(ws)
		err := s.ApplyGossipKeyring(uint64(i+1), &pb.GossipKeyringEntry{Op: st.op, Key: st.key})
		if (err != nil) != st.fails {
			t.Fatalf("step %d %s %s: error %v, want failure %v", i, st.op, st.key, err, st.fails)
		}
		k := s.GossipKeyring(nil)
		if len(k.Keys) != st.keys || k.Primary != st.primary {
			t.Fatalf("step %d %s %s: keyring %v, want %d keys, primary %s", i, st.op, st.key, k, st.keys, st.primary)
		}
		if before != nil && err == nil && st.op != KeyringInit && ws.Watch(time.After(time.Second)) {
			t.Fatalf("step %d %s %s: the watch did not fire", i, st.op, st.key)
		}
	}
}

// Adoption by token, as the state machine decides it.
func TestRegisterRunnerWithToken(t *testing.T) {
	now := timestamppb.New(time.Unix(1000, 0))
	newStore := func(t *testing.T) *Store {
		t.Helper()
		s, err := New()
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []*pb.RunnerToken{
			{Id: "t-once", Hash: []byte{1}, MaxUses: 1},
			{Id: "t-any", Hash: []byte{2}},
			{Id: "t-prod", Hash: []byte{3}, Labels: map[string]string{"env": "prod"}, Projects: []string{"web"}},
			{Id: "t-old", Hash: []byte{4}, ExpiresAt: timestamppb.New(time.Unix(999, 0))},
		} {
			if err := s.UpsertRunnerToken(1, tok); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	runner := func(id string, secret byte, labels map[string]string) *pb.Runner {
		return &pb.Runner{Id: id, Capacity: 1, Labels: labels, SecretHash: []byte{secret}, Status: rpc.RunnerPending}
	}
	type reg struct {
		r      *pb.Runner
		token  string
		status string // "" means refused
	}
	for _, tc := range []struct {
		name   string
		before func(*testing.T, *Store)
		regs   []reg
	}{
		{"single use adopts once", nil, []reg{
			{runner("r-a", 1, nil), "t-once", rpc.RunnerAdopted},
			{runner("r-b", 2, nil), "t-once", ""},
		}},
		{"no limit", nil, []reg{
			{runner("r-a", 1, nil), "t-any", rpc.RunnerAdopted},
			{runner("r-b", 2, nil), "t-any", rpc.RunnerAdopted},
		}},
		{"label binding", nil, []reg{
			{runner("r-a", 1, map[string]string{"env": "dev"}), "t-prod", ""},
			{runner("r-b", 2, map[string]string{"env": "prod", "os": "linux"}), "t-prod", rpc.RunnerAdopted},
		}},
		{"expired", nil, []reg{{runner("r-a", 1, nil), "t-old", ""}}},
		{"unknown token", nil, []reg{{runner("r-a", 1, nil), "t-none", ""}}},
		{"another secret for a known id", nil, []reg{
			{runner("r-a", 1, nil), "t-any", rpc.RunnerAdopted},
			{runner("r-a", 2, nil), "t-any", ""},
		}},
		{"forgotten id comes back pending, its rejected secret never", nil, []reg{
			{runner("r-a", 1, nil), "t-any", rpc.RunnerAdopted},
			{nil, "reject+forget r-a", ""},
			{runner("r-a", 1, nil), "t-any", ""},
			{runner("r-a", 2, nil), "t-any", rpc.RunnerPending},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			index := uint64(10)
			for i, g := range tc.regs {
				index++
				if g.r == nil {
					if err := s.UpdateRunner(index, &pb.RunnerUpdateEntry{RunnerId: "r-a", Action: RunnerReject, Time: now}); err != nil {
						t.Fatal(err)
					}
					index++
					if err := s.ForgetRunner(index, &pb.ForgetRunnerEntry{RunnerId: "r-a", Time: now}); err != nil {
						t.Fatal(err)
					}
					continue
				}
				err := s.RegisterRunnerWithToken(index, g.r, g.token, now)
				if g.status == "" {
					if err == nil {
						t.Fatalf("registration %d (%s with %s) was accepted, want refused", i, g.r.Id, g.token)
					}
					continue
				}
				if err != nil {
					t.Fatalf("registration %d (%s with %s): %v", i, g.r.Id, g.token, err)
				}
				got, err := s.RunnerByID(nil, g.r.Id)
				if err != nil || got.Status != g.status {
					t.Fatalf("registration %d: runner %v (%v), want status %s", i, got, err, g.status)
				}
				if g.token == "t-prod" && (len(got.Projects) != 1 || got.Projects[0] != "web") {
					t.Errorf("runner adopted by a project-bound token serves %v", got.Projects)
				}
			}
		})
	}
}
