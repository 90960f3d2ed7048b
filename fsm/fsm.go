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
	"github.com/outpost-run/outpost/internal/validate"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
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
	res := f.apply(l.Index, t, body)
	f.appliedByType[t].Add(1)
	f.notifyApplied(l.Index)
	return res
}

// ErrInvalidEntry is what an entry that breaks a rule of internal/validate
// gets back: a name, label or size no handler should have let in.
var ErrInvalidEntry = errors.New("invalid entry")

// checkValues applies internal/validate's rules to the values an entry
// carries into the state (names, labels, capacities), so no client, no
// other version and no forwarded raw apply can store what the CLI and the
// handlers refuse. Every server applies the same rules to the same entry,
// so all refuse it alike. Fields tests and old entries leave empty are
// checked only when set.
func checkValues(body any) error {
	switch b := body.(type) {
	case *pb.SubmitJobsEntry:
		for _, j := range b.Jobs {
			if err := checkJob(j); err != nil {
				return fmt.Errorf("job %s: %w", j.GetId(), err)
			}
		}
	case *pb.UpsertRunnerEntry:
		r := b.Runner
		if err := validate.RunnerID(r.Id); err != nil {
			return err
		}
		if r.Name != "" {
			if err := validate.RunnerName(r.Name); err != nil {
				return err
			}
		}
		if err := validate.Capacity(int64(r.Capacity)); err != nil {
			return err
		}
		return validate.Labels(r.Labels)
	case *pb.UpsertProfilesEntry:
		for _, p := range b.Profiles {
			if err := validate.ProfileName(p.Name); err != nil {
				return err
			}
			if err := validate.Labels(p.TargetLabels); err != nil {
				return fmt.Errorf("profile %s: %w", p.Name, err)
			}
		}
	case *pb.UpsertProjectEntry:
		return validate.ProjectName(b.Project.GetName())
	}
	return nil
}

func checkJob(j *pb.Job) error {
	for _, c := range []struct {
		value string
		check func(string) error
	}{{j.Project, validate.ProjectName}, {j.Name, validate.JobName}, {j.Workspace, validate.Workspace}, {j.Profile, validate.ProfileName}} {
		if c.value != "" {
			if err := c.check(c.value); err != nil {
				return err
			}
		}
	}
	return validate.Labels(j.TargetLabels)
}

// checkEntry rejects entries that decode but lack what their apply needs, so a
// corrupt or hand-made entry yields an error instead of a panic, and entries
// whose values break the rules of internal/validate.
func checkEntry(t MessageType, body any) error {
	missing := ""
	switch b := body.(type) {
	case *pb.SubmitJobsEntry:
		for _, j := range b.Jobs {
			if j.GetId() == "" {
				missing = "job id"
			}
		}
	case *pb.JobStartedEntry:
		if b.Report == nil {
			missing = "report"
		}
	case *pb.AppendLogsEntry:
		if b.Report == nil {
			missing = "report"
		}
	case *pb.FinishJobEntry:
		if b.Report == nil {
			missing = "report"
		}
	case *pb.UpsertRunnerEntry:
		if b.Runner.GetId() == "" {
			missing = "runner id"
		}
	case *pb.UpsertProjectEntry:
		if b.Project.GetName() == "" {
			missing = "project name"
		}
	case *pb.UpsertRunnerTokenEntry:
		if b.Token.GetId() == "" || len(b.Token.GetHash()) == 0 {
			missing = "token id and hash"
		}
	case *pb.RunnerReportsEntry:
		for _, r := range b.Reports {
			switch m := r.GetMsg().(type) {
			case *pb.RunnerMessage_Started:
				if m.Started == nil {
					missing = "started report"
				}
			case *pb.RunnerMessage_Logs:
				if m.Logs == nil {
					missing = "logs report"
				}
			case *pb.RunnerMessage_Finished:
				if m.Finished == nil {
					missing = "finished report"
				}
			}
		}
	case *pb.PinJobEntry:
		if b.JobId == "" {
			missing = "job id"
		}
	case *pb.UpsertProfilesEntry:
		for _, p := range b.Profiles {
			if p.GetName() == "" {
				missing = "profile name"
			}
		}
	}
	if missing != "" {
		return fmt.Errorf("fsm: %s entry has no %s", t, missing)
	}
	if err := checkValues(body); err != nil {
		return fmt.Errorf("%s entry: %w: %w", t, err, ErrInvalidEntry)
	}
	return nil
}

func (f *FSM) apply(index uint64, t MessageType, body any) any {
	if err := checkEntry(t, body); err != nil {
		return err
	}
	st := f.State()
	switch b := body.(type) {
	case *pb.SubmitJobsEntry:
		return st.SubmitJobs(index, b.Jobs)
	case *pb.AssignJobsEntry:
		ids, err := st.AssignJobs(index, b)
		if err != nil {
			return err
		}
		return &AssignResult{Assigned: ids}
	case *pb.JobStartedEntry:
		return st.JobStarted(index, b.Report)
	case *pb.AppendLogsEntry:
		return st.AppendLogs(index, b.Report)
	case *pb.FinishJobEntry:
		return st.FinishJob(index, b.Report)
	case *pb.CancelJobEntry:
		return st.CancelJob(index, b)
	case *pb.MarkLostEntry:
		return st.MarkLost(index, b)
	case *pb.UpsertRunnerEntry:
		return st.UpsertRunner(index, b.Runner)
	case *pb.UpsertProjectEntry:
		return st.UpsertProject(index, b.Project)
	case *pb.DeleteJobsEntry:
		return st.DeleteJobs(index, b)
	case *pb.RunnerUpdateEntry:
		return st.UpdateRunner(index, b)
	case *pb.UpsertRunnerTokenEntry:
		return st.UpsertRunnerToken(index, b.Token)
	case *pb.UpsertProfilesEntry:
		return st.UpsertProfiles(index, b.Profiles)
	case *pb.DeleteProfileEntry:
		return st.DeleteProfile(index, b.Name)
	case *pb.DeleteProjectEntry:
		return st.DeleteProject(index, b.Name)
	case *pb.SetPendingReasonsEntry:
		return st.SetPendingReasons(index, b.Reasons)
	case *pb.RetryJobEntry:
		return st.RetryJob(index, b)
	case *pb.RunnerReportsEntry:
		return &ReportsResult{Errors: st.ApplyReports(index, b.Time, b.Reports)}
	case *pb.PinJobEntry:
		return st.PinJob(index, b)
	}
	return fmt.Errorf("fsm: no apply for %s", t)
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
