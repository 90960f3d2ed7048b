package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// Log lines are shipped in batches: often enough that `job logs -f` feels
// live, rarely enough that a chatty job does not cost a Raft entry per line.
// A batch stays well under the 4 MiB a server accepts in one message.
const (
	logFlushEvery = 200 * time.Millisecond
	logFlushLines = 512
	logFlushBytes = 256 << 10
	// maxPendingLogBytes bounds the lines a job keeps while no server is
	// reachable (and so what its result carries): older lines are dropped
	// and a marker says how many.
	maxPendingLogBytes = 1 << 20
	// lineOverhead is what a line costs encoded beyond its strings: the
	// timestamp, field tags and length prefixes, rounded up. Counting
	// text alone let a result of a million one-byte lines grow past the
	// size a server accepts, to be resent forever.
	lineOverhead = 32
)

// lineSize is a line's cost against the byte limits: at least its
// encoded size.
func lineSize(l *pb.LogLine) int {
	return len(l.Data) + len(l.Step) + len(l.Stream) + lineOverhead
}

// execution is one attempt of one job on this runner.
type execution struct {
	job    *pb.Job
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	lines   []*pb.LogLine
	bytes   int
	dropped int
	kick    chan struct{}
}

// start runs an assigned job unless it already runs here or already ran:
// after a reconnect the server sends again what it believes is assigned,
// and a result still in the outbox means this attempt is done.
func (r *Runner) start(job *pb.Job) {
	if r.outbox.Has(job.Id, job.Lease) {
		return
	}
	r.mu.Lock()
	if e, ok := r.jobs[job.Id]; ok {
		r.mu.Unlock()
		if e.job.Lease != job.Lease {
			r.logger.Warn("assignment for a job already running under another lease", "job", job.Id, "lease", job.Lease, "running_lease", e.job.Lease)
		}
		return
	}
	if len(r.jobs) >= r.cfg.Capacity {
		// The server is the authority on slots. This happens when it has
		// handed back an attempt this runner still winds down (it will be
		// fenced at the next heartbeat); ignoring the new job would leave
		// it assigned forever.
		r.logger.Warn("running an assignment over capacity; an older attempt here is being fenced", "job", job.Id, "capacity", r.cfg.Capacity, "running", len(r.jobs))
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	e := &execution{job: job, ctx: ctx, kick: make(chan struct{}, 1)}
	e.cancel = func() { cancel(nil) }
	r.jobs[job.Id] = e
	r.jobsChanged()
	r.wg.Add(1)
	r.mu.Unlock()
	go r.execute(e)
}

// cancelJob stops a running attempt if its lease matches.
func (r *Runner) cancelJob(jobID string, lease uint64, reason string) {
	r.mu.Lock()
	e, ok := r.jobs[jobID]
	r.mu.Unlock()
	if !ok || e.job.Lease != lease {
		return
	}
	r.logger.Info("stopping job", "job", jobID, "reason", reason)
	e.cancel()
}

func (r *Runner) execute(e *execution) {
	defer r.wg.Done()
	job := e.job
	logger := r.logger.With("job", job.Id, "lease", job.Lease)
	logger.Debug("job starting", "name", job.Name)
	_ = r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{
		JobId: job.Id, Lease: job.Lease, Time: timestamppb.Now(),
	}}})

	var res executor.Result
	spec, cleanup, err := r.prepare(job)
	if err != nil {
		res = executor.Result{Outcome: executor.Failed, ExitCode: -1, Reason: err.Error()}
	} else {
		flushed := make(chan struct{})
		go func() { defer close(flushed); r.flushLogs(e) }()
		res = executor.Run(e.ctx, spec, e.add)
		e.cancel() // ends the flusher
		<-flushed
		cleanup()
	}

	// What is left rides with the result, at most maxPendingLogBytes; the
	// outbox keeps it with the result.
	rest := e.take(maxPendingLogBytes)
	fin := &pb.JobFinished{
		JobId:    job.Id,
		Lease:    job.Lease,
		Outcome:  string(res.Outcome),
		ExitCode: int32(res.ExitCode),
		Reason:   res.Reason,
		Time:     timestamppb.Now(),
		Lines:    rest,
	}
	// The outbox write comes first: from here on the result survives a
	// crash of this process and any server outage.
	if err := r.outbox.Put(fin); err != nil {
		logger.Error("could not store result in outbox; sending it directly", "error", err)
	}
	r.mu.Lock()
	delete(r.jobs, job.Id)
	r.jobsChanged()
	r.mu.Unlock()
	logger.Debug("job finished", "outcome", res.Outcome, "exit_code", res.ExitCode)
	if err := r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: fin}}); err != nil {
		logger.Info("result kept in outbox until a server is reachable", "error", err)
	}
}

// prepare builds the executor spec for a job and the working directory it
// runs in: a per-job directory for static jobs, an isolated executor for
// on_demand ones. cleanup removes what prepare made.
func (r *Runner) prepare(job *pb.Job) (executor.Spec, func(), error) {
	s := r.spec(job)
	if s.Driver == executor.DriverNoop {
		// Nothing runs, so nothing needs a directory.
		return s, func() {}, nil
	}
	if job.Mode == ModeOnDemand {
		cleanup, err := r.onDemand(job, &s)
		return s, cleanup, err
	}
	dir := filepath.Join(r.workDir, fmt.Sprintf("%s-%d", job.Id, job.Attempt))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, nil, fmt.Errorf("creating the job's working directory: %w", err)
	}
	s.Dir = dir
	return s, func() {
		if err := os.RemoveAll(dir); err != nil {
			r.logger.Warn("removing job directory", "dir", dir, "error", err)
		}
	}, nil
}

func (r *Runner) spec(job *pb.Job) executor.Spec {
	// Steps learn which job, attempt and runner they belong to.
	env := make(map[string]string, len(job.Env)+6)
	for k, v := range job.Env {
		env[k] = v
	}
	env["OUTPOST_JOB_ID"] = job.Id
	env["OUTPOST_JOB_NAME"] = job.Name
	env["OUTPOST_PROJECT"] = job.Project
	env["OUTPOST_WORKSPACE"] = job.Workspace
	env["OUTPOST_ATTEMPT"] = strconv.FormatUint(uint64(job.Attempt), 10)
	env["OUTPOST_RUNNER_ID"] = r.cfg.ID
	s := executor.Spec{
		JobID:        job.Id,
		Env:          env,
		BaseEnv:      r.cfg.BaseEnv,
		Timeout:      job.Timeout.AsDuration(),
		AbortTimeout: job.AbortTimeout.AsDuration(),
		Driver:       job.Driver,
	}
	if s.BaseEnv == nil {
		s.BaseEnv = os.Environ()
	}
	for _, st := range job.Steps {
		s.Steps = append(s.Steps, executor.Step{
			Name:    st.Name,
			Command: st.Command,
			Script:  st.Script,
			Env:     st.Env,
			Timeout: st.Timeout.AsDuration(),
		})
	}
	return s
}

// add buffers one line; it must be quick, it runs on the output readers.
func (e *execution) add(l executor.LogLine) {
	// Bytes, not a string: a step may print anything, and a proto string
	// holding invalid UTF-8 cannot be encoded.
	line := &pb.LogLine{Time: timestamppb.New(l.Time), Stream: string(l.Stream), Step: l.Step, Data: []byte(l.Text)}
	e.mu.Lock()
	e.lines = append(e.lines, line)
	e.bytes += lineSize(line)
	for e.bytes > maxPendingLogBytes && len(e.lines) > 1 {
		e.bytes -= lineSize(e.lines[0])
		e.lines = e.lines[1:]
		e.dropped++
	}
	n, size := len(e.lines), e.bytes
	e.mu.Unlock()
	if n >= logFlushLines || size >= logFlushBytes {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// flushLogs ships buffered lines until the job ends; what is left then goes
// out with the result.
func (r *Runner) flushLogs(e *execution) {
	t := time.NewTicker(logFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		batch := e.take(logFlushBytes)
		if len(batch) == 0 {
			continue
		}
		err := r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{
			JobId: e.job.Id, Lease: e.job.Lease, Lines: batch,
		}}})
		if err != nil {
			// Not connected: keep the lines, in order, for the next try.
			e.putBack(batch)
		}
	}
}

// take removes up to about limit bytes of the oldest buffered lines, led
// by a marker if lines were dropped while no server was reachable.
func (e *execution) take(limit int) []*pb.LogLine {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*pb.LogLine
	if e.dropped > 0 {
		out = append(out, &pb.LogLine{Time: timestamppb.Now(), Stream: "system",
			Data: fmt.Appendf(nil, "outpost: %d lines dropped while no server was reachable", e.dropped)})
		e.dropped = 0
	}
	size, n := 0, 0
	for n < len(e.lines) && (n == 0 || size+lineSize(e.lines[n]) <= limit) {
		size += lineSize(e.lines[n])
		n++
	}
	out = append(out, e.lines[:n]...)
	e.lines = e.lines[n:]
	e.bytes -= size
	return out
}

func (e *execution) putBack(batch []*pb.LogLine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines = append(batch, e.lines...)
	for _, l := range batch {
		e.bytes += lineSize(l)
	}
}
