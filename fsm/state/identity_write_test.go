package state

import (
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"

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
