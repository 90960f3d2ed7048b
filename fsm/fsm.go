package fsm

import (
	"context"
	"errors"
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

	// onHalt is Config.Halt.
	onHalt func(error)
	// halted is set, once, by the first entry of a type this server does
	// not know; from then on Apply, Snapshot and Restore refuse, so the
	// state never moves past that entry.
	halted atomic.Pointer[haltState]
}

type haltState struct {
	cause *UnknownTypeError
	// refusal is what every later call gets back.
	refusal error
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

// Config is what NewWithConfig needs.
type Config struct {
	Logger hclog.Logger
	// Halt is told, once, that the log holds an entry of a type this
	// server does not know and that was not flagged ignorable: the server
	// is older than the leader that wrote it. The error is an
	// *UnknownTypeError. By then the FSM refuses everything after the
	// entry, so the state stays at the entry before it; Halt should stop
	// the server so it can be upgraded. It runs on Raft's apply goroutine
	// and must not wait for Raft (Raft's shutdown waits for Apply).
	Halt func(error)
}

// UnknownTypeError is why an FSM halts: the entry at Index has a type
// this version does not know, written by a newer leader.
type UnknownTypeError struct {
	Index uint64
	Type  MessageType
}

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("fsm: log entry %d has type %d, which this server does not know: "+
		"this server is older than the leader; upgrade it, then start it again on the same data directory",
		e.Index, byte(e.Type))
}

func (e *UnknownTypeError) Unwrap() error { return ErrUnknownType }

// ErrHalted is what an FSM that met an entry of an unknown type returns for
// everything after it.
var ErrHalted = errors.New("state machine halted")

// New returns an FSM over an empty state store, with no Halt hook: an
// entry of an unknown type still stops it applying, and says so in the
// log.
func New(logger hclog.Logger) (*FSM, error) {
	return NewWithConfig(Config{Logger: logger})
}

// NewWithConfig returns an FSM over an empty state store.
func NewWithConfig(cfg Config) (*FSM, error) {
	st, err := state.New()
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &FSM{logger: logger.Named("fsm"), state: st, applied: make(chan struct{}), onHalt: cfg.Halt}, nil
}

// Halted returns the entry that stopped this FSM, or nil while it applies.
func (f *FSM) Halted() *UnknownTypeError {
	if h := f.halted.Load(); h != nil {
		return h.cause
	}
	return nil
}

// halt stops the FSM at the entry cause names. Raft goes on handing it
// entries (it cannot be told to stop from here); each is refused.
func (f *FSM) halt(cause *UnknownTypeError) error {
	h := &haltState{cause: cause, refusal: fmt.Errorf("fsm: %w at log entry %d; nothing after it is applied: %w", ErrHalted, cause.Index, cause)}
	f.halted.Store(h)
	f.logger.Error("halting: the log holds an entry this server cannot apply",
		"index", cause.Index, "type", byte(cause.Type), "error", cause)
	if f.onHalt != nil {
		f.onHalt(cause)
	}
	return h.refusal
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
	if h := f.halted.Load(); h != nil {
		return h.refusal
	}
	t, body, err := Decode(l.Data)
	if errors.Is(err, ErrUnknownType) {
		// A newer leader wrote a type this version does not know. Applying
		// what follows without it would diverge silently from the servers
		// that know it, so this server stops, unless the leader said the
		// entry may be skipped.
		if MessageType(l.Data[0])&IgnoreUnknownTypeFlag != 0 {
			f.logger.Warn("skipping a log entry of a type this server does not know; it is flagged ignorable",
				"index", l.Index, "type", byte(t))
			f.notifyApplied(l.Index)
			return nil
		}
		return f.halt(&UnknownTypeError{Index: l.Index, Type: t})
	}
	if err != nil {
		// A known type with a body that does not decode: every server
		// refuses it alike, so the state stays the same everywhere.
		f.notifyApplied(l.Index)
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
	// A halted FSM lags Raft's applied index: a snapshot labelled with
	// that index would drop the unknown entry for good.
	if h := f.halted.Load(); h != nil {
		return nil, h.refusal
	}
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
	if h := f.halted.Load(); h != nil {
		return h.refusal
	}
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
