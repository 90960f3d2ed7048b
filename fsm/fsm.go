package fsm

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/outpost-run/outpost/fsm/state"
)

// FSM applies committed log entries to the state store. Restore swaps in a
// whole new store, so readers must fetch it through State each time.
type FSM struct {
	logger hclog.Logger

	mu    sync.RWMutex
	state *state.Store
	// applied is closed and replaced after every apply and restore, waking
	// WaitIndex callers.
	applied chan struct{}
	// lastIndex is the index of the last command applied, refused ones and
	// no-ops included; table indexes only move when a table changes.
	lastIndex uint64
	// appliedByType counts applied entries by type: how a workload turns
	// into log entries, which is what batching is judged by.
	appliedByType [256]atomic.Uint64
}

// AppliedByType returns how many entries of each type this FSM applied
// since it started.
func (f *FSM) AppliedByType() map[string]uint64 {
	out := map[string]uint64{}
	for t := range f.appliedByType {
		if n := f.appliedByType[t].Load(); n > 0 {
			out[MessageType(t).String()] = n
		}
	}
	return out
}

// New returns an FSM over an empty state store.
func New(logger hclog.Logger) (*FSM, error) {
	st, err := state.New()
	if err != nil {
		return nil, err
	}
	return &FSM{logger: logger.Named("fsm"), state: st, applied: make(chan struct{})}, nil
}

func (f *FSM) notifyApplied(index uint64) {
	f.mu.Lock()
	f.lastIndex = max(f.lastIndex, index)
	close(f.applied)
	f.applied = make(chan struct{})
	f.mu.Unlock()
}

// WaitIndex blocks until the state store has applied index, so a server
// that forwarded a write, or asked the leader for its read index, serves
// reads that include it.
func (f *FSM) WaitIndex(ctx context.Context, index uint64) error {
	for {
		f.mu.RLock()
		last, ch := f.lastIndex, f.applied
		f.mu.RUnlock()
		if last >= index {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (at %d): %w", index, last, ctx.Err())
		case <-ch:
		}
	}
}

// State returns the current state store.
func (f *FSM) State() *state.Store {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state
}

// AssignResult is what an AssignJobs entry returns to its proposer.
type AssignResult struct {
	Assigned []string
}

// ReportsResult is what a RunnerReports entry returns: one error (or nil)
// per report, in order.
type ReportsResult struct {
	Errors []error
}

// Apply implements raft.FSM. The returned value is the proposer's result:
// an error when the change was refused, or a typed result.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	t, body, err := Decode(l.Data)
	if err != nil {
		f.notifyApplied(l.Index)
		// A server running an older version meets a newer entry type: it
		// must not diverge silently, so it says so loudly.
		f.logger.Error("cannot apply log entry", "index", l.Index, "error", err)
		return err
	}
	et := &entryTypes[t]
	var res any
	if err := et.check(t, body); err != nil {
		res = err
	} else {
		res = et.apply(f.State(), l.Index, body)
	}
	f.appliedByType[t].Add(1)
	f.notifyApplied(l.Index)
	return res
}

// Snapshot implements raft.FSM: it captures an immutable view cheaply; the
// writing happens in Persist, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{view: f.state.Snapshot(), index: f.lastIndex}, nil
}

// AppliedIndex returns the index of the last command this FSM applied.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastIndex
}

// Restore implements raft.FSM.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.state = st
	f.lastIndex = 0
	f.mu.Unlock()
	f.notifyApplied(st.LatestIndex())
	return nil
}
