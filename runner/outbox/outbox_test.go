package outbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outpost-run/outpost/internal/testwait"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// waitQueued waits until n writes wait for the next commit.
func waitQueued(t *testing.T, o *Outbox, n int) {
	t.Helper()
	testwait.For(t, 10*time.Second, func() (bool, error) {
		o.mu.Lock()
		queued := len(o.next.ops)
		o.mu.Unlock()
		return queued >= n, fmt.Errorf("%d writes queued for the next commit, want %d", queued, n)
	})
}

// A result written before a crash is still there after a reopen, and gone
// once deleted (acknowledged).
func TestOutboxSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fin := &pb.JobFinished{JobId: "j-1", Lease: 7, Outcome: "succeeded", Lines: []*pb.LogLine{{Text: "bye"}}}
	if err := o.Put(fin); err != nil {
		t.Fatal(err)
	}
	if err := o.Put(&pb.JobFinished{JobId: "j-2", Lease: 9, Outcome: "failed"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	o, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := o.List()
	if err != nil || len(got) != 2 {
		t.Fatalf("after reopen: %v, %v; want 2 results", got, err)
	}
	if !o.Has("j-1", 7) || o.Has("j-1", 8) {
		t.Fatal("Has does not tell attempts apart by lease")
	}
	keys, err := o.Keys()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(keys, func(a, b *pb.RunningJob) int { return strings.Compare(a.JobId, b.JobId) })
	if len(keys) != 2 || keys[0].JobId != "j-1" || keys[0].Lease != 7 || keys[1].JobId != "j-2" || keys[1].Lease != 9 {
		t.Fatalf("Keys = %v, want j-1/7 and j-2/9", keys)
	}
	if err := o.Delete("j-1", 7); err != nil {
		t.Fatal(err)
	}
	got, _ = o.List()
	if len(got) != 1 || got[0].JobId != "j-2" {
		t.Fatalf("after delete: %v, want only j-2", got)
	}
}

func TestMemoryOutbox(t *testing.T) {
	o := Memory()
	_ = o.Put(&pb.JobFinished{JobId: "j-1", Lease: 1})
	if !o.Has("j-1", 1) {
		t.Fatal("memory outbox lost a result")
	}
	_ = o.Delete("j-1", 1)
	if got, _ := o.List(); len(got) != 0 {
		t.Fatalf("memory outbox kept %v", got)
	}
}

// open is Open for tests.
func open(t *testing.T, path string) *Outbox {
	t.Helper()
	o, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func listIDs(t *testing.T, o *Outbox) map[string]bool {
	t.Helper()
	got, err := o.List()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, f := range got {
		ids[fmt.Sprintf("%s/%d", f.JobId, f.Lease)] = true
	}
	return ids
}

// Puts from many goroutines at once all survive a reopen.
func TestOutboxConcurrentPutsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := o.Put(&pb.JobFinished{JobId: fmt.Sprintf("j-%d", i), Lease: uint64(i), Outcome: "succeeded"}); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d puts in %d transactions", n, o.commits.Load())

	o = open(t, path)
	defer o.Close()
	ids := listIDs(t, o)
	if len(ids) != n {
		t.Fatalf("after reopen: %d results, want %d", len(ids), n)
	}
	for i := range n {
		if !o.Has(fmt.Sprintf("j-%d", i), uint64(i)) || !ids[fmt.Sprintf("j-%d/%d", i, i)] {
			t.Fatalf("j-%d lost", i)
		}
	}
}

// Once Put returns the report is in the file, without a Close: a copy of
// the file taken then (what a crash leaves behind) holds it.
func TestOutboxPutIsCommittedWhenItReturns(t *testing.T) {
	dir := t.TempDir()
	o := open(t, filepath.Join(dir, "outbox.db"))
	defer o.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Put(&pb.JobFinished{JobId: fmt.Sprintf("j-%d", i), Lease: 1}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "outbox.db"))
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, crashed)
	defer c.Close()
	if ids := listIDs(t, c); len(ids) != 20 {
		t.Fatalf("file after Puts returned holds %d results, want 20", len(ids))
	}
}

// Writes that arrive while a transaction commits share the next one.
func TestOutboxGroupsConcurrentWrites(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer o.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	first := true
	o.beforeCommit = func() {
		if first {
			first = false
			close(entered)
			<-release
		}
	}
	var wg sync.WaitGroup
	put := func(i int) {
		defer wg.Done()
		if err := o.Put(&pb.JobFinished{JobId: fmt.Sprintf("j-%d", i), Lease: 1}); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go put(0)
	<-entered // the first write went at once and now commits
	const more = 63
	for i := 1; i <= more; i++ {
		wg.Add(1)
		go put(i)
	}
	waitQueued(t, o, more)
	o.Delete("j-0", 1) // a delete rides along too
	close(release)
	wg.Wait()
	if c := o.commits.Load(); c != 2 {
		t.Fatalf("%d transactions for 64 puts and a delete, want 2", c)
	}
	if ids := listIDs(t, o); len(ids) != more || ids["j-0/1"] {
		t.Fatalf("after the batch: %d results (j-0 present: %v), want %d without j-0", len(ids), ids["j-0/1"], more)
	}
}

// A delete is visible to Has and List as soon as Delete returns, before its
// transaction commits, and on disk after Close and a reopen.
func TestOutboxDeleteVisibleAtOnceAndDurableAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := open(t, path)
	for i := range 10 {
		if err := o.Put(&pb.JobFinished{JobId: fmt.Sprintf("j-%d", i), Lease: 3}); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the committer inside the next transaction.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o.beforeCommit = func() { once.Do(func() { close(entered); <-release }) }
	for i := 0; i < 10; i += 2 {
		if err := o.Delete(fmt.Sprintf("j-%d", i), 3); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	check := func(o *Outbox, when string) {
		t.Helper()
		ids := listIDs(t, o)
		if len(ids) != 5 {
			t.Fatalf("%s: List has %d results, want 5", when, len(ids))
		}
		for i := range 10 {
			id := fmt.Sprintf("j-%d", i)
			if want := i%2 == 1; o.Has(id, 3) != want || ids[id+"/3"] != want {
				t.Fatalf("%s: %s Has=%v List=%v, want %v", when, id, o.Has(id, 3), ids[id+"/3"], want)
			}
		}
	}
	check(o, "before the deletes commit")
	close(release)
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Delete("j-1", 3); err != ErrClosed {
		t.Fatalf("Delete after Close: %v, want ErrClosed", err)
	}
	if err := o.Put(&pb.JobFinished{JobId: "j-1", Lease: 4}); err != ErrClosed {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	o = open(t, path)
	defer o.Close()
	check(o, "after reopen")
}

// Has and List agree with the history of Puts and Deletes, on disk and in
// memory.
func TestOutboxHasListConsistent(t *testing.T) {
	type step struct {
		del   bool
		id    string
		lease uint64
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string // id/lease left
	}{
		{"put", []step{{false, "a", 1}}, []string{"a/1"}},
		{"put delete", []step{{false, "a", 1}, {true, "a", 1}}, nil},
		{"delete other lease", []step{{false, "a", 1}, {true, "a", 2}}, []string{"a/1"}},
		{"delete absent", []step{{true, "a", 1}}, nil},
		{"put again after delete", []step{{false, "a", 1}, {true, "a", 1}, {false, "a", 1}}, []string{"a/1"}},
		{"delete twice", []step{{false, "a", 1}, {false, "b", 1}, {true, "a", 1}, {true, "a", 1}}, []string{"b/1"}},
		{"two leases", []step{{false, "a", 1}, {false, "a", 2}, {true, "a", 1}}, []string{"a/2"}},
	} {
		for _, mode := range []string{"disk", "memory"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "outbox.db")
				var o *Outbox
				if mode == "disk" {
					o = open(t, path)
				} else {
					o = Memory()
				}
				defer func() { o.Close() }()
				for _, s := range tc.steps {
					var err error
					if s.del {
						err = o.Delete(s.id, s.lease)
					} else {
						err = o.Put(&pb.JobFinished{JobId: s.id, Lease: s.lease})
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				verify := func(when string) {
					t.Helper()
					ids := listIDs(t, o)
					if len(ids) != len(tc.want) {
						t.Fatalf("%s: List = %v, want %v", when, ids, tc.want)
					}
					for _, w := range tc.want {
						id, lease, _ := strings.Cut(w, "/")
						l, _ := strconv.ParseUint(lease, 10, 64)
						if !ids[w] || !o.Has(id, l) {
							t.Fatalf("%s: %s missing (List %v)", when, w, ids)
						}
					}
					for _, s := range tc.steps {
						if o.Has(s.id, s.lease) != ids[fmt.Sprintf("%s/%d", s.id, s.lease)] {
							t.Fatalf("%s: Has(%s, %d) disagrees with List", when, s.id, s.lease)
						}
					}
				}
				verify("now")
				if mode == "disk" {
					if err := o.Close(); err != nil {
						t.Fatal(err)
					}
					o = open(t, path)
					verify("after reopen")
				}
			})
		}
	}
}

// Has and List never show a report that a returned Delete removed, while
// other goroutines put and delete around them.
func TestOutboxConcurrentDeletesConsistent(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer o.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id := fmt.Sprintf("j-%d-%d", g, i)
				if err := o.Put(&pb.JobFinished{JobId: id, Lease: 1}); err != nil {
					t.Error(err)
					return
				}
				if !o.Has(id, 1) {
					t.Errorf("%s missing right after Put", id)
				}
				if err := o.Delete(id, 1); err != nil {
					t.Error(err)
					return
				}
				if o.Has(id, 1) || listIDs(t, o)[id+"/1"] {
					t.Errorf("%s still there after Delete", id)
				}
			}
		}()
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
}

// A write bolt refuses fails alone, not the others in its transaction.
func TestOutboxBadWriteFailsAlone(t *testing.T) {
	o := open(t, filepath.Join(t.TempDir(), "outbox.db"))
	defer o.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o.beforeCommit = func() { once.Do(func() { close(entered); <-release }) }
	errs := make(chan error, 3)
	go func() { errs <- o.Put(&pb.JobFinished{JobId: "first", Lease: 1}) }()
	<-entered
	go func() { errs <- o.Put(&pb.JobFinished{JobId: strings.Repeat("x", bolt.MaxKeySize), Lease: 1}) }()
	go func() { errs <- o.Put(&pb.JobFinished{JobId: "good", Lease: 1}) }()
	waitQueued(t, o, 2)
	close(release)
	failed := 0
	for range 3 {
		if <-errs != nil {
			failed++
		}
	}
	if failed != 1 || !o.Has("good", 1) || !o.Has("first", 1) {
		t.Fatalf("%d puts failed (want 1); good stored: %v", failed, o.Has("good", 1))
	}
}

// Get reads one result, its final log with it, and nothing once deleted.
func TestOutboxGet(t *testing.T) {
	for name, o := range map[string]*Outbox{"disk": open(t, filepath.Join(t.TempDir(), "outbox.db")), "memory": Memory()} {
		t.Run(name, func(t *testing.T) {
			fin := &pb.JobFinished{JobId: "j-1", Lease: 9, Outcome: "succeeded", FinalPieces: 1,
				FinalLog: []*pb.JobLogs{{JobId: "j-1", Lease: 9, FinalPiece: 1, Lines: []*pb.LogLine{{Data: []byte("last")}}}}}
			if err := o.Put(fin); err != nil {
				t.Fatal(err)
			}
			got, err := o.Get("j-1", 9)
			if err != nil || got == nil || string(got.FinalLog[0].Lines[0].Data) != "last" {
				t.Fatalf("Get: %v, %v", got, err)
			}
			if got, err := o.Get("j-1", 8); got != nil || err != nil {
				t.Fatalf("Get of another lease: %v, %v", got, err)
			}
			if err := o.Delete("j-1", 9); err != nil {
				t.Fatal(err)
			}
			if got, err := o.Get("j-1", 9); got != nil || err != nil {
				t.Fatalf("Get after Delete: %v, %v", got, err)
			}
		})
	}
}
