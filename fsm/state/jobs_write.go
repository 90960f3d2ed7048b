package state

import (
	"fmt"
	"math"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	if Terminal(j.Status) {
		return j, nil // decoded afresh from the history
	}
	return proto.Clone(j).(*pb.Job), nil
}

func (s *Store) putJob(txn *memdb.Txn, index uint64, j *pb.Job) error {
	j.ModifyIndex = index
	return s.storeJob(txn, j)
}

// SubmitJobs inserts new pending jobs. A job whose id exists already is left
// alone, so a retried submit that did commit the first time changes nothing.
func (s *Store) SubmitJobs(index uint64, jobs []*pb.Job) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, j := range jobs {
			if _, old, _ := jobIn(txn, j.Id); old != nil {
				continue
			}
			j = proto.Clone(j).(*pb.Job)
			j.Status = StatusPending
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
			if err != nil || j.Status != StatusPending {
				continue
			}
			j.Status = StatusAssigned
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

// current returns the job if lease is its current one and it is still held by
// a runner; a report for anything else is stale.
func current(txn *memdb.Txn, id string, lease uint64) (*pb.Job, error) {
	j, err := getJob(txn, id)
	if err != nil {
		return nil, err
	}
	if j.Lease != lease || lease == 0 {
		return nil, fmt.Errorf("job %s lease %d (current %d): %w", id, lease, j.Lease, ErrStaleLease)
	}
	return j, nil
}

// JobStarted records that the runner holding the lease started the job.
func (s *Store) JobStarted(index uint64, r *pb.JobStarted) error {
	return s.write(index, func(txn *memdb.Txn) error { return s.jobStarted(txn, index, r) }, TableJobs)
}

// write runs fn in a write transaction and, unless it failed, records
// index as the index of each table it names and commits. The report
// methods leave setting the index to their caller so a batch of reports
// sets it once.
func (s *Store) write(index uint64, fn func(*memdb.Txn) error, tables ...string) error {
	txn := s.txn()
	defer txn.Abort()
	if err := fn(txn); err != nil {
		return err
	}
	for _, t := range tables {
		if err := setIndex(txn, t, index); err != nil {
			return err
		}
	}
	txn.Commit()
	return nil
}

// ApplyReports applies a runner's batch of reports in one transaction,
// each accepted or refused on its own (a refused report changes nothing).
func (s *Store) ApplyReports(index uint64, reports []*pb.RunnerMessage) []error {
	errs := make([]error, len(reports))
	txn := s.txn()
	defer txn.Abort()
	for i, r := range reports {
		switch m := r.GetMsg().(type) {
		case *pb.RunnerMessage_Started:
			errs[i] = s.jobStarted(txn, index, m.Started)
		case *pb.RunnerMessage_Logs:
			errs[i] = s.appendLogs(txn, index, m.Logs)
		case *pb.RunnerMessage_Finished:
			errs[i] = s.finishJob(txn, index, m.Finished)
		default:
			errs[i] = fmt.Errorf("runner report of type %T is not a job report: %w", r.GetMsg(), ErrConflict)
		}
	}
	if err := setIndex(txn, TableJobs, index); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	txn.Commit()
	return errs
}

func (s *Store) jobStarted(txn *memdb.Txn, index uint64, r *pb.JobStarted) error {
	j, err := current(txn, r.JobId, r.Lease)
	if err != nil {
		return err
	}
	switch j.Status {
	case StatusAssigned:
		j.Status = StatusRunning
		j.StatusReason = "running on runner " + j.RunnerId
	case StatusRunning, StatusCanceling:
		// A repeated report, or a start that raced a cancel: nothing new.
		return nil
	default:
		return fmt.Errorf("job %s is %s: %w", j.Id, j.Status, ErrStaleLease)
	}
	j.StartedAt = r.Time
	j.UpdatedAt = r.Time
	return s.putJob(txn, index, j)
}

// AppendLogs stores a run of log lines for the current attempt of a job.
func (s *Store) AppendLogs(index uint64, r *pb.JobLogs) error {
	return s.write(index, func(txn *memdb.Txn) error { return s.appendLogs(txn, index, r) }, TableJobs)
}

func (s *Store) appendLogs(txn *memdb.Txn, index uint64, r *pb.JobLogs) error {
	j, err := current(txn, r.JobId, r.Lease)
	if err != nil {
		return err
	}
	if !Active(j.Status) {
		return fmt.Errorf("job %s is %s: %w", j.Id, j.Status, ErrStaleLease)
	}
	if err := s.appendLines(txn, index, j, r.Lines); err != nil {
		return err
	}
	return s.putJob(txn, index, j)
}

// appendLines adds lines as one chunk, enforcing the per-job cap: the line
// that would cross it is replaced by a marker and later lines are dropped.
// It updates j's counters but does not store j: the caller stores it once,
// because memdb computes the old index entries from the stored object, and
// storing the same pointer twice in one transaction would leave stale ones.
func (s *Store) appendLines(txn *memdb.Txn, index uint64, j *pb.Job, lines []*pb.LogLine) error {
	if len(lines) == 0 || j.LogsTruncated {
		return nil
	}
	keep := lines[:0:0]
	for _, l := range lines {
		n := uint64(len(l.Text))
		if j.LogBytes+n > s.maxLogBytes {
			j.LogsTruncated = true
			keep = append(keep, &pb.LogLine{Time: l.Time, Stream: "system", Step: l.Step,
				Text: fmt.Sprintf("outpost: log truncated: this job reached the %d byte log limit; later lines are dropped", s.maxLogBytes)})
			break
		}
		j.LogBytes += n
		keep = append(keep, l)
	}
	j.LogChunks++
	c := &pb.LogChunk{JobId: j.Id, Seq: j.LogChunks, Attempt: j.Attempt, Lines: keep}
	if err := txn.Insert(TableJobLogs, c); err != nil {
		return fmt.Errorf("state: insert log chunk: %w", err)
	}
	return setIndex(txn, TableJobLogs, index)
}

// FinishJob records a runner's result. A report repeated after it was applied
// (the outbox resending) finds the job terminal under the same lease and
// changes nothing. A failure with retries left puts the job back in the queue.
func (s *Store) FinishJob(index uint64, r *pb.JobFinished) error {
	return s.write(index, func(txn *memdb.Txn) error { return s.finishJob(txn, index, r) }, TableJobs)
}

func (s *Store) finishJob(txn *memdb.Txn, index uint64, r *pb.JobFinished) error {
	j, err := current(txn, r.JobId, r.Lease)
	if err != nil {
		return err
	}
	if Terminal(j.Status) {
		return nil
	}
	if j.Status == StatusPending {
		return fmt.Errorf("job %s is pending: %w", j.Id, ErrStaleLease)
	}
	if err := s.appendLines(txn, index, j, r.Lines); err != nil {
		return err
	}
	j.ExitCode = r.ExitCode
	j.Error = r.Reason
	j.FinishedAt = r.Time
	j.UpdatedAt = r.Time
	switch r.Outcome {
	case "succeeded":
		j.Status = StatusSucceeded
		j.StatusReason = "all steps succeeded"
		j.Error = ""
	case "canceled":
		j.Status = StatusCanceled
		j.StatusReason = reasonOr(r.Reason, "canceled")
		if j.CancelReason != "" {
			j.StatusReason = j.CancelReason + " (" + j.StatusReason + ")"
		}
	default: // failed, timed_out
		j.Status = StatusFailed
		j.StatusReason = reasonOr(r.Reason, "failed")
		if !j.CancelRequested && retryLeft(j) {
			requeue(j, r.Time, fmt.Sprintf("attempt %d failed: %s", j.Attempt, j.StatusReason))
		}
	}
	return s.putJob(txn, index, j)
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
	j.Status = StatusPending
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
		case Terminal(j.Status):
			return fmt.Errorf("job %s already %s: %w", j.Id, j.Status, ErrConflict)
		case j.Status == StatusPending:
			j.Status = StatusCanceled
			j.StatusReason = reason
			j.FinishedAt = e.Time
		default:
			j.Status = StatusCanceling
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

// MarkLost handles jobs whose runner went away: each is requeued while it has
// attempts left, else ends lost. Entries whose lease moved on are ignored.
func (s *Store) MarkLost(index uint64, e *pb.MarkLostEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, l := range e.Jobs {
			j, err := current(txn, l.JobId, l.Lease)
			if err != nil || !Active(j.Status) {
				continue
			}
			why := fmt.Sprintf("attempt %d lost: %s", j.Attempt, e.Reason)
			allowed := uint32(LostRetries)
			if j.Retry != nil && j.Retry.Attempts > allowed {
				allowed = j.Retry.Attempts
			}
			switch {
			case j.CancelRequested:
				j.Status = StatusCanceled
				j.StatusReason = "canceled; its runner was lost before confirming: " + e.Reason
				j.FinishedAt = e.Time
			case j.Attempt <= allowed:
				requeue(j, nil, why)
			default:
				j.Status = StatusLost
				j.StatusReason = why + "; no attempts left"
				j.FinishedAt = e.Time
			}
			j.UpdatedAt = e.Time
			if err := s.putJob(txn, index, j); err != nil {
				return err
			}
		}
		return nil
	}, TableJobs)
}

// DeleteJobs removes finished jobs and their logs (garbage collection).
func (s *Store) DeleteJobs(index uint64, ids []string) error {
	return s.write(index, func(txn *memdb.Txn) error {
		for _, id := range ids {
			// Only finished jobs are in the history; others stay.
			found, err := s.deleteFinished(txn, id)
			if err != nil {
				return fmt.Errorf("state: delete job %s: %w", id, err)
			}
			if !found {
				continue
			}
			if _, err := txn.DeletePrefix(TableJobLogs, "id_prefix", id+"\x00"); err != nil {
				return fmt.Errorf("state: delete logs of %s: %w", id, err)
			}
		}
		return nil
	}, TableJobs, TableJobLogs)
}
