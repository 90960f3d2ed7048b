package agent

import (
	"errors"
	"testing"
	"time"

	"github.com/outpost-run/outpost/fsm"
)

// A server whose log holds an entry of a type it does not know says so on
// Halted, applies nothing after it, and still shuts down.
func TestServerHaltsAtAnUnknownEntryType(t *testing.T) {
	s := devServer(t, nil)
	before := s.fsm.AppliedIndex()
	// Type 100 with an empty body: what a newer version might write.
	fut := s.raft.Apply([]byte{100}, 10*time.Second)
	if err := fut.Error(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.Halted():
		var ut *fsm.UnknownTypeError
		if !errors.As(err, &ut) || ut.Index != fut.Index() {
			t.Fatalf("Halted delivered %v, want entry %d", err, fut.Index())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not halt")
	}
	if got := s.fsm.AppliedIndex(); got >= fut.Index() || got < before {
		t.Fatalf("applied index %d after halting at %d (was %d)", got, fut.Index(), before)
	}
	next := s.raft.Apply([]byte{byte(fsm.DeleteProfileType)}, 10*time.Second)
	if err := next.Error(); err != nil {
		t.Fatal(err)
	}
	if err, _ := next.Response().(error); !errors.Is(err, fsm.ErrHalted) {
		t.Fatalf("an entry after the halt got %v, want fsm.ErrHalted", next.Response())
	}
	if got := s.fsm.AppliedIndex(); got >= fut.Index() {
		t.Fatalf("applied index moved to %d after the halt", got)
	}
}
