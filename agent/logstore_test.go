package agent

import (
	"testing"

	"github.com/hashicorp/raft"
)

func entries(from, to uint64, size int) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Data: make([]byte, size)})
	}
	return out
}

// The store knows the bytes of the entries in the log, whichever end is
// deleted, and says when they pass the bound.
func TestCountingLogStoreKnowsTheLogsBytes(t *testing.T) {
	full := make(chan struct{}, 1)
	c := &countingLogStore{LogStore: raft.NewInmemStore(), full: full, fullAt: 100 * (1000 + entryOverhead)}
	if err := c.StoreLogs(entries(1, 90, 1000)); err != nil {
		t.Fatal(err)
	}
	if b, n := c.logBytes(); b != 90*(1000+entryOverhead) || n != 90 {
		t.Fatalf("%d bytes in %d entries", b, n)
	}
	select {
	case <-full:
		t.Fatal("full before the bound")
	default:
	}
	if err := c.StoreLogs(entries(91, 120, 1000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-full:
	default:
		t.Fatal("not told the log passed its bound")
	}
	if err := c.DeleteRange(1, 100); err != nil { // compaction
		t.Fatal(err)
	}
	if c.appended() != 0 {
		t.Fatalf("%d bytes appended since a compaction, want 0", c.appended())
	}
	if err := c.DeleteRange(115, 120); err != nil { // conflicting entries
		t.Fatal(err)
	}
	if b, n := c.logBytes(); n != 14 || b != 14*(1000+entryOverhead) {
		t.Fatalf("after deletes: %d bytes in %d entries, want 14 entries", b, n)
	}
	// After a snapshot install the log restarts further on.
	if err := c.StoreLogs(entries(500, 501, 10)); err != nil {
		t.Fatal(err)
	}
	if _, n := c.logBytes(); n != 2 {
		t.Fatalf("%d entries after a jump, want 2", n)
	}
	// Reloaded from the store at a restart.
	d := &countingLogStore{LogStore: c.LogStore}
	if err := d.load(); err != nil {
		t.Fatal(err)
	}
	if b, _ := c.logBytes(); b == 0 {
		t.Fatal("empty")
	}
}

// Trailing entries are as many of the largest in the log as fit in the
// bytes.
func TestTrailingForFitsTheBytes(t *testing.T) {
	c := &countingLogStore{LogStore: raft.NewInmemStore()}
	if err := c.StoreLogs(entries(1, 100, 256<<10)); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLogs(entries(101, 200, 100)); err != nil {
		t.Fatal(err)
	}
	if n := c.trailingFor(16<<20, 10240); n != 63 {
		t.Errorf("trailing for 16 MiB behind 256 KiB entries: %d, want 63", n)
	}
	if n := c.trailingFor(1<<10, 10240); n != minTrailingLogs {
		t.Errorf("trailing for 1 KiB: %d, want the minimum %d", n, minTrailingLogs)
	}
	small := &countingLogStore{LogStore: raft.NewInmemStore()}
	if err := small.StoreLogs(entries(1, 10, 100-entryOverhead)); err != nil {
		t.Fatal(err)
	}
	if n := small.trailingFor(100*100, 10240); n != 100 {
		t.Errorf("trailing for 100 byte entries: %d, want 100", n)
	}
	if n := small.trailingFor(1<<30, 10240); n != 10240 {
		t.Errorf("trailing within raft_trailing_logs: %d, want 10240", n)
	}
}

func TestBoundedLogCache(t *testing.T) {
	store := raft.NewInmemStore()
	c := newBoundedLogCache(store, 100, 10*(1000+entryOverhead))
	if err := c.StoreLogs(entries(1, 50, 1000)); err != nil {
		t.Fatal(err)
	}
	if len(c.order) != 10 || c.order[0] != 41 {
		t.Fatalf("cached %d entries from %v, want the newest 10", len(c.order), c.order[:1])
	}
	var l raft.Log
	if err := c.GetLog(3, &l); err != nil || l.Index != 3 {
		t.Fatalf("an entry past the cache: %v %v", l.Index, err)
	}
	if err := c.DeleteRange(1, 45); err != nil {
		t.Fatal(err)
	}
	if len(c.byIdx) != 0 {
		t.Fatal("cache kept entries across a delete")
	}
}
