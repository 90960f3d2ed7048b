package testcluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// NoopProject returns a project file with one job, "noop", whose one step
// runs /bin/true. Submitted with the "noop" driver, as Load does, it spawns
// nothing: a job costs only its Raft entries (submit, and its share of an
// assignment batch and a report batch). retries > 0 adds a retry stanza, so
// a job lost with a runner killed under load is requeued, not ended lost.
func NoopProject(project string, retries int) []byte {
	retry := ""
	if retries > 0 {
		retry = fmt.Sprintf("  retry { attempts = %d }\n", retries)
	}
	return fmt.Appendf(nil, "project = %q\n\njob \"noop\" {\n%s  step \"s\" { command = [\"/bin/true\"] }\n}\n", project, retry)
}

// LoadOptions describes a Load.
type LoadOptions struct {
	// Source is the project file submitted; default NoopProject("load", 0).
	Source []byte
	// Job is the job to submit from it; default "noop".
	Job string
	// Driver overrides the driver of every step; default "noop". Use "-"
	// for the project's own drivers.
	Driver string
	// Workers is how many goroutines submit, each one job at a time;
	// default 4.
	Workers int
	// Count stops the load once this many ids have been started; 0 means
	// until Stop.
	Count int
	// AttemptTimeout bounds one SubmitJob call; default 30s, well above a
	// server's own bound on waiting for a leader, so a server's answer,
	// not the client's patience, decides an attempt.
	AttemptTimeout time.Duration
	// RetryFor is how long one id is retried before the load gives up on
	// it (it is then listed by Abandoned); default 2 minutes.
	RetryFor time.Duration
}

// Attempt is one SubmitJob call.
type Attempt struct {
	ID string
	// N numbers the attempts of one id from 1.
	N     int
	Start time.Time
	Took  time.Duration
	// Err is nil for an acknowledged submit; Code is then 0.
	Err  error
	Code connect.Code
}

// End is when the attempt's answer arrived.
func (a Attempt) End() time.Time { return a.Start.Add(a.Took) }

func (a Attempt) String() string {
	outcome := "ok"
	if a.Err != nil {
		outcome = a.Err.Error()
	}
	return fmt.Sprintf("%s try %d at %s (%v): %s", a.ID, a.N, a.Start.Format("15:04:05.000"), a.Took.Round(time.Millisecond), outcome)
}

// Load submits jobs continuously from several goroutines, as a busy client
// would, each with an id the client chose. A submit that fails is retried
// with the same id until it is acknowledged, so a retry after an unclear
// failure (the first try did commit) must not queue a second job. Every
// attempt and every acknowledged id is recorded. Its methods are safe for
// concurrent use.
type Load struct {
	t      testing.TB
	client *rpc.Client
	opts   LoadOptions

	stop   chan struct{}
	ctx    context.Context // canceled to abandon in-flight work at cleanup
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	started   int
	acked     []string
	ackedSet  map[string]bool
	attempts  []Attempt
	abandoned []string
	stopOnce  sync.Once
}

// StartLoad starts submitting through c. The load ends with Stop, when
// Count ids are done (Wait), or, abandoning what is in flight, when the test
// ends.
func StartLoad(t testing.TB, c *rpc.Client, opts LoadOptions) *Load {
	t.Helper()
	if opts.Source == nil {
		opts.Source = NoopProject("load", 0)
	}
	if opts.Job == "" {
		opts.Job = "noop"
	}
	switch opts.Driver {
	case "":
		opts.Driver = "noop"
	case "-":
		opts.Driver = ""
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 30 * time.Second
	}
	if opts.RetryFor <= 0 {
		opts.RetryFor = 2 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{t: t, client: c, opts: opts, stop: make(chan struct{}), ctx: ctx, cancel: cancel, ackedSet: map[string]bool{}}
	for range opts.Workers {
		l.wg.Go(l.work)
	}
	t.Cleanup(func() {
		l.cancel()
		l.Stop()
	})
	return l
}

func (l *Load) work() {
	for {
		select {
		case <-l.stop:
			return
		case <-l.ctx.Done():
			return
		default:
		}
		l.mu.Lock()
		if l.opts.Count > 0 && l.started >= l.opts.Count {
			l.mu.Unlock()
			return
		}
		l.started++
		l.mu.Unlock()
		l.submit(rpc.NewJobID())
	}
}

// submit sends one job until it is acknowledged, the load is abandoned, or
// RetryFor has passed.
func (l *Load) submit(id string) {
	giveUp := time.Now().Add(l.opts.RetryFor)
	backoff := 20 * time.Millisecond
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.AttemptTimeout)
		start := time.Now()
		_, err := l.client.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{
			Id: id, ProjectSource: l.opts.Source, Job: l.opts.Job, Driver: l.opts.Driver,
		}))
		cancel()
		a := Attempt{ID: id, N: n, Start: start, Took: time.Since(start), Err: err}
		if err != nil {
			a.Code = connect.CodeOf(err)
		}
		// Already exists: the id is a collected job's, so an earlier
		// attempt committed it, and it ran and was garbage-collected.
		if a.Code == connect.CodeAlreadyExists {
			err = nil
		}
		l.mu.Lock()
		l.attempts = append(l.attempts, a)
		if err == nil {
			l.acked = append(l.acked, id)
			l.ackedSet[id] = true
		}
		l.mu.Unlock()
		if err == nil {
			return
		}
		// A request the server refused as malformed fails the same way
		// every time; anything else may be an election or a lost answer,
		// which the same id makes safe to retry.
		if a.Code == connect.CodeInvalidArgument || l.ctx.Err() != nil || time.Now().After(giveUp) {
			l.mu.Lock()
			l.abandoned = append(l.abandoned, id)
			l.mu.Unlock()
			return
		}
		select {
		case <-l.ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Stop starts no new jobs and waits until each one in flight is
// acknowledged or given up on.
func (l *Load) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Wait waits until the workers end: Count ids are done, or Stop was called.
func (l *Load) Wait() { l.wg.Wait() }

// Acked returns the acknowledged ids, in the order the acknowledgments
// arrived.
func (l *Load) Acked() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// AckedCount returns how many ids have been acknowledged so far.
func (l *Load) AckedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// IsAcked reports whether id was acknowledged.
func (l *Load) IsAcked(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ackedSet[id]
}

// Attempts returns every attempt so far, in the order they ended.
func (l *Load) Attempts() []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Attempt(nil), l.attempts...)
}

// Abandoned returns the ids given up on without an acknowledgment. Such a
// job may exist or not: its last try may have committed unseen.
func (l *Load) Abandoned() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.abandoned...)
}

// FirstAckAfter returns when the first submit that started after t was
// acknowledged: how long writes were unavailable after a fault at t.
func (l *Load) FirstAckAfter(t time.Time) (time.Time, bool) {
	var first time.Time
	for _, a := range l.Attempts() {
		if a.Err == nil && a.Start.After(t) && (first.IsZero() || a.End().Before(first)) {
			first = a.End()
		}
	}
	return first, !first.IsZero()
}

// WaitAcked waits until at least n more ids than when called have been
// acknowledged: the cluster is taking writes.
func (l *Load) WaitAcked(n int, timeout time.Duration) {
	l.t.Helper()
	base := l.AckedCount()
	WaitFor(l.t, timeout, func() (bool, string) {
		got := l.AckedCount() - base
		if got >= n {
			return true, ""
		}
		msg := fmt.Sprintf("%d of %d more submits acknowledged", got, n)
		if at := l.Attempts(); len(at) > 0 {
			msg += "; last attempt: " + at[len(at)-1].String()
		}
		return false, msg
	})
}

// ErrorsBy counts the failed attempts by their code.
func (l *Load) ErrorsBy() map[connect.Code]int {
	out := map[connect.Code]int{}
	for _, a := range l.Attempts() {
		if a.Err != nil {
			out[a.Code]++
		}
	}
	return out
}

// IsUnavailable reports whether err is the API's "no leader, retry" error.
func IsUnavailable(err error) bool {
	var ce *connect.Error
	return errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable
}
