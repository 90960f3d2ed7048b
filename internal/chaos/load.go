package chaos

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Load is an open-loop client: it starts a submit every 1/Rate seconds
// (with exponential gaps, as independent clients would), whether or not
// earlier ones have been answered, so a stalled cluster sees work pile up
// as it would in production. testcluster.Load is closed-loop (each worker
// waits for its answer) and sends to one client address; here every call
// goes to a server picked at random, cut-off and frozen ones included,
// and the checks need to know which server answered each call and when.
//
// Each job has an id chosen here (rpc.NewJobID: "j-" and 16 hex digits).
// A call that fails in any way but "invalid" is retried with the same id
// on another random server until acknowledged or RetryFor passes: the
// same id makes a retry after an unclear failure (the first call did
// commit, its answer was lost) safe.
type Load struct {
	servers []*testcluster.Server
	source  []byte
	opts    LoadOptions

	// rng draws the job mix, in the one goroutine that starts submits, so
	// a seed replays it; pick draws servers for the calls, from many
	// goroutines in an order no seed can fix.
	rng    *rand.Rand
	pickMu sync.Mutex
	pick   *rand.Rand

	stop     chan struct{}
	stopOnce sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu        sync.Mutex
	started   int
	skipped   int
	inflight  int
	attempts  []SubmitAttempt
	acked     map[string]*SubmitAttempt
	ackOrder  []string
	abandoned []string
	jobOf     map[string]string
}

// LoadOptions sizes a Load.
type LoadOptions struct {
	// Rate is submits started per second.
	Rate float64
	// Jobs are the job names to pick from, uniformly.
	Jobs []string
	// MinWork and MaxWork bound each job's work time (the marker's ms).
	MinWork, MaxWork time.Duration
	// AttemptTimeout bounds one call: a frozen server holds it that long.
	AttemptTimeout time.Duration
	// RetryFor is how long one id is retried.
	RetryFor time.Duration
	// MaxInflight bounds the ids being submitted at once; a start beyond
	// it is skipped and counted, so a long outage cannot grow goroutines
	// without bound.
	MaxInflight int
}

// SubmitAttempt is one SubmitJob call.
type SubmitAttempt struct {
	ID     string `json:"id"`
	Job    string `json:"job"`
	N      int    `json:"n"`
	Server string `json:"server"`
	// StartMono and EndMono bracket the call (CLOCK_MONOTONIC ns).
	StartMono int64     `json:"start_mono"`
	EndMono   int64     `json:"end_mono"`
	Start     time.Time `json:"start"`
	Err       string    `json:"err,omitempty"`
	Code      string    `json:"code,omitempty"`
}

// StartLoad starts submitting source's jobs to servers. seed makes the
// job mix and work times replayable.
func StartLoad(servers []*testcluster.Server, source []byte, seed uint64, opts LoadOptions) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{
		servers: servers, source: source, opts: opts,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		pick: rand.New(rand.NewPCG(seed^0x5851f42d4c957f2d, seed)),
		stop: make(chan struct{}), ctx: ctx, cancel: cancel,
		acked: map[string]*SubmitAttempt{}, jobOf: map[string]string{},
	}
	l.wg.Add(1)
	go l.run()
	return l
}

func (l *Load) intn(n int) int {
	l.pickMu.Lock()
	defer l.pickMu.Unlock()
	return l.pick.IntN(n)
}

func (l *Load) run() {
	defer l.wg.Done()
	for {
		gap := time.Duration(l.rng.ExpFloat64() / l.opts.Rate * float64(time.Second))
		job := l.opts.Jobs[l.rng.IntN(len(l.opts.Jobs))]
		work := l.opts.MinWork + time.Duration(l.rng.Int64N(int64(l.opts.MaxWork-l.opts.MinWork)+1))
		select {
		case <-l.stop:
			return
		case <-time.After(gap):
		}
		l.mu.Lock()
		if l.inflight >= l.opts.MaxInflight {
			l.skipped++
			l.mu.Unlock()
			continue
		}
		l.inflight++
		l.started++
		id := rpc.NewJobID()
		l.jobOf[id] = job
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.submit(id, job, work)
			l.mu.Lock()
			l.inflight--
			l.mu.Unlock()
		}()
	}
}

func (l *Load) submit(id, job string, work time.Duration) {
	giveUp := time.Now().Add(l.opts.RetryFor)
	backoff := 50 * time.Millisecond
	last := -1
	vars := map[string]string{"ms": strconv.FormatInt(work.Milliseconds(), 10)}
	for n := 1; ; n++ {
		i := l.intn(len(l.servers))
		if i == last && len(l.servers) > 1 {
			i = (i + 1) % len(l.servers)
		}
		last = i
		s := l.servers[i]
		ctx, cancel := context.WithTimeout(l.ctx, l.opts.AttemptTimeout)
		a := SubmitAttempt{ID: id, Job: job, N: n, Server: s.Name(), Start: time.Now(), StartMono: Mono()}
		_, err := s.Client().Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{
			Id: id, ProjectSource: l.source, Job: job, Variables: vars,
		}))
		a.EndMono = Mono()
		cancel()
		if err != nil {
			a.Err = err.Error()
			a.Code = connect.CodeOf(err).String()
		}
		l.mu.Lock()
		l.attempts = append(l.attempts, a)
		if err == nil {
			// A copy, not a pointer into attempts: the slice moves.
			cp := a
			l.acked[id] = &cp
			l.ackOrder = append(l.ackOrder, id)
		}
		l.mu.Unlock()
		if err == nil {
			return
		}
		if connect.CodeOf(err) == connect.CodeInvalidArgument || l.ctx.Err() != nil || time.Now().After(giveUp) {
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

// Stop starts no more submits and waits, up to RetryFor, for those in
// flight to be acknowledged or given up on.
func (l *Load) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(l.opts.RetryFor + l.opts.AttemptTimeout + 5*time.Second):
		l.cancel()
		<-done
	}
}

// Abort abandons what is in flight.
func (l *Load) Abort() {
	l.cancel()
	l.Stop()
}

// LoadResult is what the client saw.
type LoadResult struct {
	Started   int
	Skipped   int
	Attempts  []SubmitAttempt
	Acked     map[string]*SubmitAttempt // id -> the acknowledged call
	AckOrder  []string
	Abandoned []string
	JobOf     map[string]string // id -> job name, for every id started
}

// Result returns a copy of what the client saw so far.
func (l *Load) Result() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := LoadResult{
		Started: l.started, Skipped: l.skipped,
		Attempts:  append([]SubmitAttempt(nil), l.attempts...),
		Acked:     map[string]*SubmitAttempt{},
		AckOrder:  append([]string(nil), l.ackOrder...),
		Abandoned: append([]string(nil), l.abandoned...),
		JobOf:     map[string]string{},
	}
	for k, v := range l.acked {
		cp := *v
		r.Acked[k] = &cp
	}
	for k, v := range l.jobOf {
		r.JobOf[k] = v
	}
	return r
}

// AckedCount is how many ids have been acknowledged.
func (l *Load) AckedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}
