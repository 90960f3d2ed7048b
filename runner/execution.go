package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hashicorp/go-hclog"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// logFlushEvery is how often live log lines are sent: often enough that
// `job logs -f` feels live, rarely enough that a chatty job does not cost
// a report per line. What is sent is bounded by the job's log rate.
const logFlushEvery = 200 * time.Millisecond

// execution is one attempt of one job on this runner.
type execution struct {
	key    jobKey
	job    *pb.Job
	ctx    context.Context
	cancel context.CancelCauseFunc
	// prev are older attempts of the same job on this runner, being
	// stopped: this one runs no step before they are over.
	prev []<-chan struct{}
	// done is closed once the attempt is over and its processes gone.
	done chan struct{}
	// started gets the servers' answers to this attempt's start.
	started chan *pb.Ack

	mu sync.Mutex
	// running is set once the steps may run, in lease epoch epoch;
	// fenced once the lease lapsed and the runner stopped the attempt.
	running bool
	epoch   uint64
	fenced  bool

	// log shapes the attempt's output into its log; kick wakes the
	// sender when enough waits.
	log  *jobLog
	kick chan struct{}
}

// stop cancels the attempt; cause, if not nil, says why.
func (e *execution) stop(cause error) { e.cancel(cause) }

// startAnswered hands the servers' answer to the start to the attempt.
func (e *execution) startAnswered(a *pb.Ack) {
	for {
		select {
		case e.started <- a:
			return
		default:
		}
		// An older answer waits unread: this newer one replaces it.
		select {
		case <-e.started:
		default:
		}
	}
}

// start takes an assignment. It is ignored if this attempt already runs
// here or already ran (after a reconnect the server sends again what it
// believes is assigned, and a result still in the outbox means this
// attempt is done). An older attempt of the same job still held here is
// stopped: the job came back to this runner under a new lease.
func (r *Runner) start(job *pb.Job) {
	key := jobKey{job.Id, job.Lease}
	// Once the attempt is held (or known to be in the outbox), never
	// before: a heartbeat that counts this lease as seen must list it.
	defer r.noteLease(job.Lease)
	if r.outbox.Has(job.Id, job.Lease) {
		return
	}
	r.mu.Lock()
	if _, ok := r.jobs[key]; ok {
		r.mu.Unlock()
		return
	}
	var prev []<-chan struct{}
	for k, old := range r.jobs {
		if k.id != job.Id {
			continue
		}
		if k.lease > job.Lease {
			r.mu.Unlock()
			r.logger.Warn("ignoring an assignment older than one held", "job", job.Id, "lease", job.Lease, "held_lease", k.lease)
			return
		}
		r.logger.Info("job given to this runner again under a new lease; stopping the old attempt", "job", job.Id, "old_lease", k.lease, "lease", job.Lease)
		old.stop(fmt.Errorf("the job was given to this runner again, under lease %d", job.Lease))
		prev = append(prev, old.done)
	}
	if len(r.jobs) >= r.cfg.Capacity {
		// The server is the authority on slots. This happens when it has
		// handed back an attempt this runner still winds down; ignoring
		// the new job would leave it assigned until its start deadline.
		r.logger.Warn("taking an assignment over capacity; an older attempt here is being stopped", "job", job.Id, "capacity", r.cfg.Capacity, "held", len(r.jobs))
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	e := &execution{key: key, job: job, ctx: ctx, cancel: cancel, prev: prev, done: make(chan struct{}),
		started: make(chan *pb.Ack, 1), log: newJobLog(r.cfg.Logs), kick: make(chan struct{}, 1)}
	r.jobs[key] = e
	r.jobsChanged()
	r.wg.Add(1)
	r.mu.Unlock()
	go r.execute(e)
}

// noteLease raises the highest lease seen to lease.
func (r *Runner) noteLease(lease uint64) {
	for {
		seen := r.seenLease.Load()
		if lease <= seen || r.seenLease.CompareAndSwap(seen, lease) {
			return
		}
	}
}

// cancelJob stops an attempt this runner holds.
func (r *Runner) cancelJob(jobID string, lease uint64, reason string) {
	r.mu.Lock()
	e, ok := r.jobs[jobKey{jobID, lease}]
	r.mu.Unlock()
	if !ok {
		return
	}
	r.logger.Info("stopping job", "job", jobID, "lease", lease, "reason", reason)
	e.stop(errors.New(reason))
}

// leaseLapsed stops every attempt that started before the lease lapsed:
// the servers are about to give them away, so the steps get SIGTERM now
// and SIGKILL by the lease deadline.
func (r *Runner) leaseLapsed(epoch uint64) {
	t := r.lease.timings()
	after := r.lease.sinceConfirmed()
	cause := executor.Fenced{Grace: t.Deadline - t.Stop, Reason: fmt.Sprintf(
		"the runner could not confirm its lease with any server for %s and stopped the job itself before the servers give it to another runner",
		after.Round(100*time.Millisecond))}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.jobs {
		e.mu.Lock()
		if e.running && e.epoch < epoch {
			e.fenced = true
			e.cancel(cause)
			n++
		}
		e.mu.Unlock()
	}
	if n > 0 {
		r.logger.Error("lease not confirmed in time: stopping running jobs before the servers give them away", "jobs", n, "unconfirmed_for", after.Round(100*time.Millisecond))
	}
}

// startAnswerWait bounds the wait for the answer to a start; past it the
// start is sent again (its answer may have died with a stream).
const startAnswerWait = 5 * time.Second

// confirmStart gets the servers to commit this attempt's start before any
// step runs: the attempt runs only if it is still the job's current one
// when the start is in the log. The start is sent only while the lease
// holds, and counts only if the lease has not lapsed before its answer:
// a start committed then could not be told from one the servers took back
// meanwhile. It reports false when the attempt is not (or no longer) this
// runner's, or was stopped; nothing has run then.
func (r *Runner) confirmStart(e *execution, logger hclog.Logger) bool {
	retry := newBackoff(200*time.Millisecond, 2*time.Second)
	for nonce := uint64(1); ; nonce++ {
		epoch, err := r.lease.wait(e.ctx)
		if err != nil {
			return false
		}
		err = r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{
			JobId: e.job.Id, Lease: e.job.Lease, Time: timestamppb.Now(), Life: r.id.Life, Nonce: nonce,
		}}})
		if err == nil {
			a, err := e.answer(nonce)
			switch {
			case err != nil:
				return false // stopped
			case a == nil:
				// No answer in time: it may have died with a stream.
			case a.Error == "" && r.lease.stillValid(epoch):
				e.mu.Lock()
				e.running, e.epoch = true, epoch
				e.mu.Unlock()
				return true
			case a.Error == "":
				logger.Info("lease lapsed while the start was confirmed; confirming again")
			case a.Stale:
				logger.Info("assignment no longer current; not running it", "reason", a.Error)
				return false
			default:
				logger.Debug("start not recorded yet; trying again", "reason", a.Error)
			}
		}
		select {
		case <-e.ctx.Done():
			return false
		case <-time.After(retry.next()):
		}
	}
}

// answer waits up to startAnswerWait for the answer to the start sent
// with nonce: nil if none came, an error if the attempt was stopped. An
// answer to an earlier send does not count: it may come from before a
// lapse, when the start could not be told from one the servers took back.
func (e *execution) answer(nonce uint64) (*pb.Ack, error) {
	timeout := time.NewTimer(startAnswerWait)
	defer timeout.Stop()
	for {
		select {
		case a := <-e.started:
			// A server from before nonces answers 0; it cannot tell.
			if a.Nonce == nonce || a.Nonce == 0 {
				return a, nil
			}
		case <-timeout.C:
			return nil, nil
		case <-e.ctx.Done():
			return nil, e.ctx.Err()
		}
	}
}

func (r *Runner) execute(e *execution) {
	defer r.wg.Done()
	defer close(e.done)
	job := e.job
	logger := r.logger.With("job", job.Id, "lease", job.Lease)
	logger.Debug("job assigned; confirming its start")
	if !r.confirmStart(e, logger) {
		r.forget(e)
		return
	}
	for _, p := range e.prev {
		<-p // stopped already: their steps end within their abort timeout
	}
	logger.Debug("job starting", "name", job.Name)

	var res executor.Result
	spec, cleanup, err := r.prepare(job)
	if err != nil {
		res = executor.Result{Outcome: executor.Failed, ExitCode: -1, Reason: err.Error()}
	} else {
		flushed := make(chan struct{})
		go func() { defer close(flushed); r.flushLogs(e) }()
		res = executor.Run(e.ctx, spec, e.add)
		e.mu.Lock()
		e.running = false // over: a lapse from now on changes nothing
		// A lapse this runner did not see in time (it was frozen, and its
		// watchdog killed the steps) is a lapse all the same.
		if !e.fenced && !r.lease.stillValid(e.epoch) {
			e.fenced = true
			e.cancel(executor.Fenced{Reason: "the runner's lease lapsed while the job ran, and the job was stopped before the servers give it to another runner"})
		}
		e.mu.Unlock()
		e.cancel(nil) // ends the flusher
		<-flushed
		cleanup()
	}

	// What the servers lack of the log goes ahead of the result, in
	// pieces; the outbox keeps them with it.
	final := e.log.final(job.Id, job.Lease)
	fin := &pb.JobFinished{
		JobId:           job.Id,
		Lease:           job.Lease,
		Outcome:         string(res.Outcome),
		ExitCode:        int32(res.ExitCode),
		Reason:          strings.ToValidUTF8(res.Reason, "\uFFFD"),
		Time:            timestamppb.Now(),
		PeakMemoryBytes: res.PeakMemoryBytes,
		FinalLog:        final.pieces,
		FinalPieces:     uint32(len(final.pieces)),
		TailLine:        final.tailLine,
		TailByte:        final.tailByte,
	}
	if res.CPUTime > 0 {
		fin.CpuTime = durationpb.New(res.CPUTime)
	}
	e.mu.Lock()
	if e.fenced && res.Outcome != executor.Succeeded {
		// Stopped by this runner for want of a lease: the servers count it
		// as lost, not as the job's failure. A success stands, lapse or
		// not: the work is done, and the servers take the result unless a
		// newer attempt has started.
		fin.Outcome, fin.Reason = "lost", context.Cause(e.ctx).Error()
	}
	e.mu.Unlock()
	// The outbox write comes first: from here on the result survives a
	// crash of this process and any server outage.
	if err := r.outbox.Put(fin); err != nil {
		logger.Error("could not store result in outbox; sending it directly", "error", err)
	}
	r.forget(e)
	logger.Debug("job finished", "outcome", fin.Outcome, "exit_code", res.ExitCode)
	r.mu.Lock()
	s := r.session
	r.mu.Unlock()
	err = errNotConnected
	if s != nil {
		err = sendResult(s.send, s.window, fin)
	}
	if err != nil {
		logger.Info("result kept in outbox until a server is reachable", "error", err)
	}
}

// sendResult sends a result: its final log first, piece by piece, then
// the result without it. Each piece is a message of its own, so other
// messages (heartbeats, other jobs' reports) go between them, and none
// holds more than a report's worth of lines; and at most logWindowBytes
// of pieces are on their way unanswered, so the server, whose reading of
// the stream (heartbeats included) waits while its reports wait for their
// commit, always reads on soon.
func sendResult(send func(*pb.RunnerMessage) error, w *logWindow, fin *pb.JobFinished) error {
	pieces := fin.FinalLog
	for _, p := range pieces {
		if err := w.take(pieceKey{p.JobId, p.Lease, p.FinalPiece}, proto.Size(p)); err != nil {
			return err
		}
		if err := send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: p}}); err != nil {
			return err
		}
	}
	fin.FinalLog = nil
	defer func() { fin.FinalLog = pieces }()
	return send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: fin}})
}

// logWindowBytes bounds the final log pieces a stream has sent that the
// server has not answered; logWindowWait is how long a piece waits for
// room before it goes anyway (an answer lost, a server that does not
// answer pieces).
const (
	logWindowBytes = 2 << 20
	logWindowWait  = 10 * time.Second
)

type pieceKey struct {
	job   string
	lease uint64
	piece uint32
}

// logWindow is a stream's room for final log pieces in flight.
type logWindow struct {
	mu     sync.Mutex
	free   int
	sent   map[pieceKey][]int // sizes of the sends of each piece awaiting answers
	wake   chan struct{}      // closed when room is given back
	closed bool
}

func newLogWindow() *logWindow {
	return &logWindow{free: logWindowBytes, sent: map[pieceKey][]int{}, wake: make(chan struct{})}
}

// take waits for room for n bytes (at most the whole window) for piece
// k, for up to logWindowWait; it fails once the stream is over.
func (w *logWindow) take(k pieceKey, n int) error {
	n = min(n, logWindowBytes)
	deadline := time.NewTimer(logWindowWait)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return errNotConnected
		}
		if w.free >= n {
			w.free -= n
			w.sent[k] = append(w.sent[k], n)
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			// Go anyway, and count it: the window gives itself room
			// back as answers come.
			w.mu.Lock()
			w.free -= n
			w.sent[k] = append(w.sent[k], n)
			w.mu.Unlock()
			return nil
		}
	}
}

// answered gives back the room of one send of piece k.
func (w *logWindow) answered(k pieceKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sizes := w.sent[k]
	if len(sizes) == 0 {
		return
	}
	w.free += sizes[0]
	if len(sizes) == 1 {
		delete(w.sent, k)
	} else {
		w.sent[k] = sizes[1:]
	}
	close(w.wake)
	w.wake = make(chan struct{})
}

// close ends the window with its stream: waiting takes fail.
func (w *logWindow) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.wake)
	}
}

// forget drops an attempt that is over from the runner's slots.
func (r *Runner) forget(e *execution) {
	e.cancel(nil)
	r.mu.Lock()
	delete(r.jobs, e.key)
	r.jobsChanged()
	r.mu.Unlock()
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
	env["OUTPOST_LEASE"] = strconv.FormatUint(job.Lease, 10)
	env["OUTPOST_RUNNER_ID"] = r.cfg.ID
	s := executor.Spec{
		JobID: job.Id,
		Host:  r.host,
		// The lease, not the attempt: a job handed back to this runner may
		// briefly be held twice under one attempt number.
		Key:          fmt.Sprintf("%s-%d", job.Id, job.Lease),
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

// add takes one line; it must be quick, it runs on the output readers.
func (e *execution) add(l executor.LogLine) {
	if e.log.add(l) {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// flushLogs sends the live log until the job ends, within the job's log
// rate; what is left then goes ahead of the result.
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
		for {
			s := e.log.nextLive(time.Now())
			if s == nil {
				break
			}
			s.rep.JobId, s.rep.Lease = e.job.Id, e.job.Lease
			if err := r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: s.rep}}); err != nil {
				// Not connected: the lines stay for the next try, as far
				// as the head and the tail hold them.
				e.log.sendFailed()
				break
			}
			e.log.sentLive(s)
		}
	}
}
