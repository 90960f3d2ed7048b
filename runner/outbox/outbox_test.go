package outbox

import (
	"path/filepath"
	"testing"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

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
