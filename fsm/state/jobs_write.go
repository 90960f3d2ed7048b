package state

import (
	"errors"
	"fmt"
	"math"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// The job transitions. Each method is called by the FSM with the Raft index
// of the entry that carries it and must be deterministic: every time it uses
// comes from the entry, never from the clock.

// getJob returns a copy of the job that the caller may change and store.
func getJob(txn *memdb.Txn, id string) (*pb.Job, error) {
	_, j, err := jobIn(txn, id)
	if err != nil {
		return nil, err
	}
	if j == nil {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if rpc.JobTerminal(j.Status) {
		return j, nil // decoded afresh from the history
	}
	return proto.Clone(j).(*pb.Job), nil
}

func (s *Store) putJob(txn *memdb.Txn, index uint64, j *pb.Job) error {
	j.ModifyIndex = index
	return s.storeJob(txn, j)
}

// SubmitJobs inserts new pending jobs. A job whose id exists already is left
// alone, so a retried submit that did commit the first time changes nothing;
// so is one whose id is a deleted job's (see Collected): it ran already.
func (s *Store) SubmitJobs(index uint64, jobs []*pb.Job) error {
	return s.write(index, func(txn *memdb.Txn) error {
		hist, _ := historyOf(txn)
		for _, j := range jobs {
			if _, old, _ := jobIn(txn, j.Id); old != nil || hist.collected(j.Id) {
				continue
			}
			j = proto.Clone(j).(*pb.Job)
			j.Status = rpc.JobPending
			if j.StatusReason == "" {
				j.StatusReason = "waiting for a runner"
			}
			if j.Attempt == 0 {
				j.Attempt = 1
			}
			j.CreateIndex = index
			j.UpdatedAt = j.CreatedAt
			if err := s.putJob(txn, index, j); err != nil {
				return err
			}
		}
		return nil
	}, TableJobs)
}

// AssignJobs gives pending jobs to runners. The entry's index becomes each
// assignment's lease. Jobs that are no longer pending (canceled meanwhile)
// are skipped; the ids actually assigned are returned.
func (s *Store) AssignJobs(index uint64, e *pb.AssignJobsEntry) ([]string, error) {
	var done []string
	err := s.write(index, func(txn *memdb.Txn) error {
		for _, a := range e.Assignments {
			j, err := getJob(txn, a.JobId)
			if err != nil || j.Status != rpc.JobPending {
				continue
			}
			j.Status = rpc.JobAssigned
			j.StatusReason = "assigned to runner " + a.RunnerId
			j.RunnerId = a.RunnerId
			j.Lease = index
			j.AssignedAt = e.Time
			j.StartedAt = nil
			j.UpdatedAt = e.Time
			if err := s.putJob(txn, index, j); err != nil {
				return err
			}
			done = append(done, a.JobId)
		}
		return nil
	}, TableJobs)
	if err != nil {
		return nil, err
	}
	return done, nil
}

// JobStarted records that the runner holding the lease started the job.
func (s *Store) JobStarted(index uint64, r *pb.JobStarted) error {
	return s.editJobs(index, func(e *jobEdits) error { return e.started(r) })
}

// AppendLogs stores a run of log lines for the current attempt of a job.
func (s *Store) AppendLogs(index uint64, r *pb.JobLogs) error {
	return s.editJobs(index, func(e *jobEdits) error { return e.logs(r) })
}

// FinishJob records a runner's result. A report repeated after it was applied
// (the outbox resending) finds the job terminal under the same lease and
// changes nothing. A failure with retries left puts the job back in the queue.
func (s *Store) FinishJob(index uint64, r *pb.JobFinished) error {
	return s.editJobs(index, func(e *jobEdits) error { return e.finished(r) })
}

// editJobs runs one report's change as its own transaction.
func (s *Store) editJobs(index uint64, fn func(*jobEdits) error) error {
	return s.write(index, func(txn *memdb.Txn) error {
		e := s.newJobEdits(txn, index)
		if err := fn(e); err != nil {
			return err
		}
		return e.flush(nil)
	}, TableJobs)
}

// ApplyReports applies a runner's batch of reports in one transaction,
// each accepted or refused on its own (a refused report changes nothing).
// at is the entry's time, by the clock of the server that wrote it: a job
// the reports finish is done as of then (see pb.Job.done_at).
func (s *Store) ApplyReports(index uint64, at *timestamppb.Timestamp, reports []*pb.RunnerMessage) []error {
	errs := make([]error, len(reports))
	txn := s.txn()
	defer txn.Abort()
	e := s.newJobEdits(txn, index)
	e.at = at
	for i, r := range reports {
		e.report = i
		switch m := r.GetMsg().(type) {
		case *pb.RunnerMessage_Started:
			errs[i] = e.started(m.Started)
		case *pb.RunnerMessage_Logs:
			errs[i] = e.logs(m.Logs)
		case *pb.RunnerMessage_Finished:
			errs[i] = e.finished(m.Finished)
		default:
			errs[i] = fmt.Errorf("runner report of type %T is not a job report: %w", r.GetMsg(), ErrConflict)
		}
	}
	err := e.flush(errs)
	if err == nil {
		err = setIndex(txn, TableJobs, index)
	}
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	txn.Commit()
	return errs
}

// jobEdits collects the changes of one transaction's reports and stores
// each changed job once, when flushed. A quick job's start, logs and
// result mostly arrive in one batch; storing the job after each report
// copied it and rewrote its index entries three times, and on every
// server. A report's change is made to the job only once everything that
// can refuse it has passed, so a refused report leaves no trace.
type jobEdits struct {
	s     *Store
	txn   *memdb.Txn
	index uint64
	// jobs are the copies reports have read, dirty the ones to store, in
	// the order first changed so every server stores them alike.
	jobs  map[string]*pb.Job
	dirty []*pb.Job
	// report is the position of the report being applied; by records,
	// per changed job, the reports that changed it.
	report int
	by     map[string][]int
	// at is the time of the entry, when it has one: jobs it finishes are
	// done as of then.
	at *timestamppb.Timestamp
}

func (s *Store) newJobEdits(txn *memdb.Txn, index uint64) *jobEdits {
	return &jobEdits{s: s, txn: txn, index: index, jobs: map[string]*pb.Job{}, by: map[string][]int{}}
}

// current returns the job if lease is its current one; a report for any
// other attempt is stale.
func (e *jobEdits) current(id string, lease uint64) (*pb.Job, error) {
	j, ok := e.jobs[id]
	if !ok {
		var err error
		if j, err = getJob(e.txn, id); err != nil {
			return nil, err
		}
		e.jobs[id] = j
	}
	if j.Lease != lease || lease == 0 {
		return nil, fmt.Errorf("job %s lease %d (current %d): %w", id, lease, j.Lease, ErrStaleLease)
	}
	return j, nil
}

// changed marks j to be stored by flush.
func (e *jobEdits) changed(j *pb.Job) {
	reports, seen := e.by[j.Id]
	if !seen {
		e.dirty = append(e.dirty, j)
	}
	e.by[j.Id] = append(reports, e.report)
}

// flush stores every changed job. A store that fails is reported against
// the reports that changed that job, in errs when given; without errs the
// first failure is returned.
func (e *jobEdits) flush(errs []error) error {
	for _, j := range e.dirty {
		if rpc.JobTerminal(j.Status) && j.DoneAt == nil && e.at != nil {
			j.DoneAt = e.at
		}
		if err := e.s.putJob(e.txn, e.index, j); err != nil {
			if errs == nil {
				return err
			}
			for _, i := range e.by[j.Id] {
				errs[i] = err
			}
		}
	}
	return nil
}

func (e *jobEdits) started(r *pb.JobStarted) error {
	j, err := e.current(r.JobId, r.Lease)
	if err != nil {
		return err
	}
	switch j.Status {
	case rpc.JobAssigned:
	case rpc.JobRunning, rpc.JobCanceling:
		// A repeated report, or a start that raced a cancel: nothing new.
		return nil
	default:
		return fmt.Errorf("job %s is %s: %w", j.Id, j.Status, ErrStaleLease)
	}
	j.Status = rpc.JobRunning
	j.StatusReason = "running on runner " + j.RunnerId
	j.RunnerLife = r.Life
	j.StartedAt = r.Time
	j.UpdatedAt = r.Time
	e.changed(j)
	return nil
}

func (e *jobEdits) logs(r *pb.JobLogs) error {
	j, err := e.current(r.JobId, r.Lease)
	attempt := uint32(0)
	if r.FinalPiece > 0 && (errors.Is(err, ErrStaleLease) || (err == nil && j.Status == rpc.JobLost)) {
		// The final log of an attempt given up on whose result may still
		// be taken (see lateResult) is taken with it.
		if late, ok := e.lateLogs(r); ok {
			j, err, attempt = late, nil, late.LostAttempt
		}
	}
	if err != nil {
		return err
	}
	if attempt == 0 {
		if !rpc.JobActive(j.Status) {
			return fmt.Errorf("job %s is %s: %w", j.Id, j.Status, ErrStaleLease)
		}
		attempt = j.Attempt
	}
	changed, err := e.s.storeLogs(e.txn, e.index, j, attempt, r, false)
	if changed {
		e.changed(j)
	}
	return err
}

// asBytes returns a line whose text is in Data, as lines are stored. A
// runner from before lines were bytes sent Text; it is valid UTF-8, so
// moving it changes nothing a reader sees.
func asBytes(l *pb.LogLine) *pb.LogLine {
	if l.Text == "" {
		return l
	}
	c := proto.Clone(l).(*pb.LogLine)
	c.Data = append([]byte(c.Text), c.Data...)
	c.Text = ""
	return c
}

func (e *jobEdits) finished(r *pb.JobFinished) error {
	j, err := e.current(r.JobId, r.Lease)
	late := false
	if errors.Is(err, ErrStaleLease) || (err == nil && j.Status == rpc.JobLost) {
		if lj, ok := e.lateResult(r); ok {
			j, err, late = lj, nil, true
		}
	}
	if err != nil {
		return err
	}
	if !late && rpc.JobTerminal(j.Status) {
		return nil
	}
	if !late && j.Status == rpc.JobPending {
		return fmt.Errorf("job %s is pending: %w", j.Id, ErrStaleLease)
	}
	if r.Outcome == "lost" {
		// The runner stopped the attempt itself, unable to confirm its
		// lease in time: the same as the leader finding it gone.
		loseAttempt(j, "runner "+j.RunnerId+": "+reasonOr(r.Reason, "stopped the job: could not confirm its lease"), r.Time)
		e.changed(j)
		return nil
	}
	// The final log comes ahead of the result, in pieces; the result is
	// taken once every piece is recorded, so a piece lost on the way (an
	// election, a broken stream) is sent again with the result rather than
	// missing from the log. A late result's pieces are taken as it is.
	lg := j.AttemptLog
	if lg != nil && lg.Lease != r.Lease {
		lg = nil
	}
	if r.FinalPieces > 0 && (lg == nil || lg.FinalPieces < r.FinalPieces) {
		have := uint32(0)
		if lg != nil {
			have = lg.FinalPieces
		}
		return fmt.Errorf("job %s lease %d: %d of the %d pieces of the attempt's final log are recorded; the runner sends them again: %w",
			j.Id, r.Lease, have, r.FinalPieces, ErrLogIncomplete)
	}
	if late {
		revive(j)
	}
	if len(r.Lines) > 0 {
		// From a runner that sent its last lines inside the result.
		if _, err := e.s.storeLogs(e.txn, e.index, j, j.Attempt, &pb.JobLogs{JobId: r.JobId, Lease: r.Lease, Lines: r.Lines}, true); err != nil {
			return err
		}
		lg = j.AttemptLog
	}
	if lg != nil && r.TailLine > 0 {
		// The log ends as head, marker and exactly the runner's tail.
		if err := e.s.trimTail(e.txn, j, lg, r.TailLine); err != nil {
			return err
		}
		if err := setIndex(e.txn, TableJobLogs, e.index); err != nil {
			return err
		}
	}
	j.AttemptLog = nil // only an attempt in play needs it
	j.ExitCode = r.ExitCode
	j.Error = r.Reason
	j.FinishedAt = r.Time
	j.UpdatedAt = r.Time
	j.PeakMemoryBytes, j.CpuTime = r.PeakMemoryBytes, r.CpuTime
	switch r.Outcome {
	case "succeeded":
		j.Status = rpc.JobSucceeded
		j.StatusReason = "all steps succeeded"
		j.Error = ""
	case "canceled":
		j.Status = rpc.JobCanceled
		j.StatusReason = reasonOr(r.Reason, "canceled")
		if j.CancelReason != "" {
			j.StatusReason = j.CancelReason + " (" + j.StatusReason + ")"
		}
	default: // failed, timed_out
		j.Status = rpc.JobFailed
		j.StatusReason = reasonOr(r.Reason, "failed")
		if !j.CancelRequested && retryLeft(j) {
			requeue(j, r.Time, fmt.Sprintf("attempt %d failed: %s", j.Attempt, j.StatusReason))
		}
	}
	e.changed(j)
	return nil
}

// lateLogs returns the job whose given-up attempt r is a final log piece
// of, when that attempt's result would still be taken (see lateResult):
// its log is part of it.
func (e *jobEdits) lateLogs(r *pb.JobLogs) (*pb.Job, bool) {
	j := e.jobs[r.JobId] // current read it
	return j, takesLate(j, r.Lease)
}

// lateResult returns the job whose given-up attempt r is the result of,
// when it is taken: the attempt the servers gave up on (its runner went
// silent, and it was requeued or ended lost) while no newer attempt has
// started. The work is done, and running it again would only repeat it.
// The job is not changed: revive does that, once nothing refuses r.
func (e *jobEdits) lateResult(r *pb.JobFinished) (*pb.Job, bool) {
	j := e.jobs[r.JobId] // current read it
	return j, r.Outcome != "lost" && takesLate(j, r.Lease)
}

// takesLate reports whether reports of j's given-up attempt under lease
// are still taken.
func takesLate(j *pb.Job, lease uint64) bool {
	if j == nil || j.LostLease == 0 || j.LostLease != lease {
		return false
	}
	switch j.Status {
	case rpc.JobPending, rpc.JobAssigned, rpc.JobLost:
		return true
	}
	return false
}

// revive makes j's given-up attempt its current one again, running, to
// take its result; a newer assignment not yet started is withdrawn by the
// same change.
func revive(j *pb.Job) {
	j.Status = rpc.JobRunning
	j.Lease, j.RunnerId, j.Attempt = j.LostLease, j.LostRunnerId, j.LostAttempt
	j.LostLease, j.LostRunnerId, j.LostAttempt = 0, "", 0
	j.NotBefore = nil
}

func reasonOr(r, def string) string {
	if r == "" {
		return def
	}
	return r
}

// retryLeft reports whether a failed attempt may be followed by another.
func retryLeft(j *pb.Job) bool {
	return j.Retry != nil && j.Attempt <= j.Retry.Attempts
}

// requeue makes j pending again as its next attempt, after the retry delay
// grown by the backoff factor for each attempt already made.
func requeue(j *pb.Job, now *timestamppb.Timestamp, why string) {
	j.Attempt++
	total := uint32(1)
	if j.Retry != nil {
		total += j.Retry.Attempts
	}
	if j.Attempt > total {
		total = j.Attempt
	}
	j.Status = rpc.JobPending
	j.StatusReason = fmt.Sprintf("%s; requeued as attempt %d of %d", why, j.Attempt, total)
	// Error keeps what happened to the previous attempt while the next one
	// runs (the status reason moves on at once); success clears it.
	j.Error = why
	j.RunnerId = ""
	j.Lease = 0
	j.AssignedAt, j.StartedAt, j.FinishedAt = nil, nil, nil
	j.NotBefore = nil
	if j.Retry != nil && j.Retry.Delay != nil && now != nil {
		d := j.Retry.Delay.AsDuration()
		if b := j.Retry.Backoff; b > 1 {
			d = time.Duration(float64(d) * math.Pow(b, float64(j.Attempt-2)))
		}
		if d > 0 {
			j.NotBefore = timestamppb.New(now.AsTime().Add(d))
		}
	}
}

// CancelJob asks for a job to stop. A pending job ends at once; one held by a
// runner moves to canceling and the runner's stream delivers the request.
func (s *Store) CancelJob(index uint64, e *pb.CancelJobEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		j, err := getJob(txn, e.JobId)
		if err != nil {
			return err
		}
		reason := reasonOr(e.Reason, "canceled by user")
		switch {
		case rpc.JobTerminal(j.Status):
			return fmt.Errorf("job %s already %s: %w", j.Id, j.Status, ErrConflict)
		case j.Status == rpc.JobPending, j.Status == rpc.JobAssigned:
			// An assigned job has not started: a runner runs steps only
			// once its start is committed, and it no longer can be.
			j.Status = rpc.JobCanceled
			j.StatusReason = reason
			j.FinishedAt = e.Time
		default:
			j.Status = rpc.JobCanceling
			j.StatusReason = reason + "; waiting for runner " + j.RunnerId + " to stop it"
		}
		j.CancelRequested = true
		j.CancelReason = reason
		j.UpdatedAt = e.Time
		if err := s.putJob(txn, index, j); err != nil {
			return err
		}
		return nil
	}, TableJobs)
}

// LostRetries is how many extra attempts a job lost with its runner gets when
// its own retry policy allows fewer: losing a runner is not the job's fault.
const LostRetries = 1

// MarkLost handles jobs whose runner went away, or did not start them in
// time. An assignment that never started goes back to the queue as the same
// attempt: nothing ran. A started attempt is requeued while it has attempts
// left, else ends lost; its lease is kept, so a result that still arrives
// from it is taken while no newer attempt has started. Entries whose lease
// moved on are ignored.
func (s *Store) MarkLost(index uint64, e *pb.MarkLostEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		ed := s.newJobEdits(txn, index)
		ed.at = e.Time
		for _, l := range e.Jobs {
			j, err := ed.current(l.JobId, l.Lease)
			if err != nil || !rpc.JobActive(j.Status) || (e.AssignedOnly && j.Status != rpc.JobAssigned) {
				continue
			}
			if j.Status == rpc.JobAssigned {
				withdraw(j, e.Reason, e.Time)
			} else {
				loseAttempt(j, e.Reason, e.Time)
			}
			j.UpdatedAt = e.Time
			ed.changed(j)
		}
		return ed.flush(nil)
	}, TableJobs)
}

// withdraw takes back an assignment that never started: the job waits in
// the queue again as the same attempt, under no lease.
func withdraw(j *pb.Job, why string, now *timestamppb.Timestamp) {
	if j.CancelRequested {
		j.Status = rpc.JobCanceled
		j.StatusReason = reasonOr(j.CancelReason, "canceled") + " (before it started)"
		j.FinishedAt = now
		return
	}
	j.Status = rpc.JobPending
	j.StatusReason = fmt.Sprintf("assignment of attempt %d taken back: %s; waiting for a runner", j.Attempt, why)
	j.RunnerId = ""
	j.Lease = 0
	j.AssignedAt, j.StartedAt = nil, nil
}

// loseAttempt ends a started attempt whose runner is gone: requeued while
// the job has attempts left, else lost. The attempt's lease and runner are
// kept so that its result, should it still arrive, can be taken.
func loseAttempt(j *pb.Job, why string, now *timestamppb.Timestamp) {
	lost := fmt.Sprintf("attempt %d lost: %s", j.Attempt, why)
	allowed := uint32(LostRetries)
	if j.Retry != nil && j.Retry.Attempts > allowed {
		allowed = j.Retry.Attempts
	}
	lease, runner, attempt := j.Lease, j.RunnerId, j.Attempt
	switch {
	case j.CancelRequested:
		j.Status = rpc.JobCanceled
		j.StatusReason = "canceled; its runner was lost before confirming: " + why
		j.FinishedAt = now
		return
	case j.Attempt <= allowed:
		requeue(j, nil, lost)
	default:
		j.Status = rpc.JobLost
		j.StatusReason = lost + "; no attempts left"
		j.FinishedAt = now
	}
	j.LostLease, j.LostRunnerId, j.LostAttempt = lease, runner, attempt
}

// DeleteJobs removes finished jobs and their logs, leaving a tombstone for
// each (see MaxTombstones). For garbage collection (e.Gc) a job that is no
// longer collectable (pinned, retried or gone since the leader chose it) is
// skipped; for a user's delete it fails the entry, with a reason.
func (s *Store) DeleteJobs(index uint64, e *pb.DeleteJobsEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		h, err := s.writableHistory(txn)
		if err != nil {
			return err
		}
		at := unixNanos(e.Time)
		deleted := &tombBatch{Index: index, At: at}
		for _, id := range e.JobIds {
			row := h.get(id)
			if !e.Gc {
				if err := deletable(txn, id, row); err != nil {
					return err
				}
			}
			if row == nil || (e.Gc && row.Pinned) {
				continue
			}
			h.remove(id)
			// Its logs moved into its row when it finished; none are left
			// in the log table, but a delete must not leave any behind.
			if _, err := txn.DeletePrefix(TableJobLogs, "id_prefix", id+"\x00"); err != nil {
				return fmt.Errorf("state: delete logs of %s: %w", id, err)
			}
			deleted.Keys = append(deleted.Keys, tombKeyOf(id))
		}
		h.addTombstones(deleted)
		h.forgetTombstones(at)
		return nil
	}, TableJobs, TableJobLogs)
}

// deletable says why a user may not delete job id (row is its history
// row, nil when it is not finished), or nil.
func deletable(txn *memdb.Txn, id string, row *finishedJob) error {
	if row != nil {
		if row.Pinned {
			return fmt.Errorf("job %s is pinned; unpin it first with `outpost job pin -undo %s`: %w", id, id, ErrConflict)
		}
		return nil
	}
	_, j, err := jobIn(txn, id)
	if err != nil {
		return err
	}
	if j == nil {
		return fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return fmt.Errorf("job %s is %s; only a finished job can be deleted (cancel it first with `outpost job cancel %s`): %w", id, j.Status, id, ErrConflict)
}

// PinJob pins or unpins a job, in any status: a pinned job is never
// garbage-collected, nor deleted by a user until unpinned.
func (s *Store) PinJob(index uint64, e *pb.PinJobEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		j, err := getJob(txn, e.JobId)
		if err != nil {
			return err
		}
		if j.Pinned == e.Pinned {
			return nil
		}
		j.Pinned = e.Pinned
		return s.putJob(txn, index, j)
	}, TableJobs)
}

// SetPendingReasons records why queued jobs wait. Jobs no longer pending are
// skipped: the reason was about a moment that has passed.
func (s *Store) SetPendingReasons(index uint64, reasons []*pb.PendingReason) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, r := range reasons {
			j, err := getJob(txn, r.JobId)
			if err != nil || j.Status != rpc.JobPending || j.StatusReason == r.Reason {
				continue
			}
			j.StatusReason = r.Reason
			if err := s.putJob(txn, index, j); err != nil {
				return err
			}
		}
		return nil
	}, TableJobs)
}

// RetryJob runs a finished job again as its next attempt.
func (s *Store) RetryJob(index uint64, e *pb.RetryJobEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		j, err := getJob(txn, e.JobId)
		if err != nil {
			return err
		}
		if !rpc.JobTerminal(j.Status) {
			return fmt.Errorf("job %s is %s; only a finished job can be retried: %w", j.Id, j.Status, ErrConflict)
		}
		prev := j.Status
		requeue(j, nil, fmt.Sprintf("retried by a user after attempt %d %s", j.Attempt, prev))
		j.CancelRequested, j.ExitCode, j.Error = false, 0, ""
		j.UpdatedAt = e.Time
		if err := s.putJob(txn, index, j); err != nil {
			return err
		}
		return nil
	}, TableJobs)
}
