// Package dispatch is the leader's dispatcher: it matches pending jobs to
// usable runners with free slots, commits the assignments in batches, and
// records in words why the jobs it cannot place are waiting. It keeps
// nothing that is not derived from the state store, so a new leader simply
// starts a new Dispatcher.
package dispatch

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/profile"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

const (
	// maxBatch bounds the assignments in one log entry, so one entry stays
	// small enough to replicate quickly.
	maxBatch = 1024
	// reasonEvery limits how often waiting reasons are written: they are
	// for people, and a busy queue must not spend its log on them.
	reasonEvery = time.Second
	maxReasons  = 4096
)

// Config wires a dispatcher to its server.
type Config struct {
	State func() *state.Store
	Apply func(context.Context, fsm.MessageType, proto.Message) (any, error)
	// Usable reports whether a runner has a live stream right now.
	Usable func(runnerID string) bool
	Logger hclog.Logger
	// Stats, if set, receives the dispatcher's counters.
	Stats *Stats
}

// Dispatcher assigns pending jobs to runners.
type Dispatcher struct {
	cfg    Config
	logger hclog.Logger
	kick   chan struct{}
	// rr breaks ties between equally loaded runners in turn.
	rr          int
	lastReasons time.Time
	stats       *Stats
}

// Stats are cumulative dispatcher counters, shared across the dispatchers
// a server runs over its leaderships.
type Stats struct {
	Passes      atomic.Uint64
	Assigned    atomic.Uint64
	DecideNanos atomic.Uint64
}

// New returns a dispatcher; Run starts it.
func New(cfg Config) *Dispatcher {
	stats := cfg.Stats
	if stats == nil {
		stats = &Stats{}
	}
	return &Dispatcher{cfg: cfg, logger: cfg.Logger.Named("dispatcher"), kick: make(chan struct{}, 1), stats: stats}
}

// Kick asks for a dispatch pass soon (a runner connected or went away).
func (d *Dispatcher) Kick() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		wake, err := d.pass(ctx, ws)
		if err != nil {
			d.logger.Warn("dispatch pass failed", "error", err)
			wake = time.Now().Add(250 * time.Millisecond)
		}
		wait := time.Second
		if !wake.IsZero() {
			wait = min(wait, max(time.Until(wake), 0))
		}
		wctx, cancel := context.WithTimeout(ctx, wait)
		ch := make(chan struct{})
		go func() {
			defer close(ch)
			select {
			case <-d.kick:
				cancel()
			case <-wctx.Done():
			}
		}()
		_ = ws.WatchCtx(wctx)
		cancel()
		<-ch
	}
}

// slot is a runner as one pass sees it.
type slot struct {
	runner *pb.Runner
	load   int
	usable bool
}

func (s *slot) free() bool { return s.usable && s.load < int(s.runner.Capacity) }

// group is the set of runners a kind of job may use: jobs with the same
// targets and project share one.
type group struct {
	slots  []*slot
	reason string // why nothing can be placed, once known
}

func groupKey(j *pb.Job) string {
	keys := make([]string, 0, len(j.TargetLabels))
	for k := range j.TargetLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte(j.TargetRunnerId + "\x00" + j.Project + "\x00")
	for _, k := range keys {
		b = append(b, k+"="+j.TargetLabels[k]+"\x00"...)
	}
	return string(b)
}

// pass makes one round of assignments. It returns the earliest time a
// delayed job becomes eligible (zero if none).
func (d *Dispatcher) pass(ctx context.Context, ws memdb.WatchSet) (time.Time, error) {
	start := time.Now()
	var committing time.Duration
	defer func() {
		d.stats.Passes.Add(1)
		d.stats.DecideNanos.Add(uint64(time.Since(start) - committing))
	}()
	commit := func(batch []*pb.Assignment) error {
		t := time.Now()
		defer func() { committing += time.Since(t) }()
		d.stats.Assigned.Add(uint64(len(batch)))
		return d.commit(ctx, batch)
	}
	st := d.cfg.State()
	pending := st.Jobs(ws, state.JobFilter{Status: state.StatusPending})
	runners := st.Runners(ws)
	if len(pending) == 0 {
		return time.Time{}, nil
	}
	slots := make([]*slot, 0, len(runners))
	for _, r := range runners {
		s := &slot{runner: r, usable: r.Status == "adopted" && !r.Draining && d.cfg.Usable(r.Id)}
		if s.usable {
			s.load = len(st.ActiveJobs(ws, r.Id))
		}
		slots = append(slots, s)
	}
	// Higher priority first; Jobs returns FIFO order, which the stable sort
	// keeps among equals.
	sort.SliceStable(pending, func(a, b int) bool { return pending[a].Priority > pending[b].Priority })

	now := time.Now()
	var (
		wake    time.Time
		batch   []*pb.Assignment
		reasons []*pb.PendingReason
		groups  = map[string]*group{}
	)
	for _, j := range pending {
		if nb := j.NotBefore; nb != nil && nb.AsTime().After(now) {
			if wake.IsZero() || nb.AsTime().Before(wake) {
				wake = nb.AsTime()
			}
			continue
		}
		key := groupKey(j)
		g, ok := groups[key]
		if !ok {
			g = &group{}
			for _, s := range slots {
				if matches(j, s.runner) {
					g.slots = append(g.slots, s)
				}
			}
			groups[key] = g
		}
		s := d.pick(g)
		if s == nil {
			if g.reason == "" {
				g.reason = explain(j, g.slots)
			}
			if j.StatusReason != g.reason {
				reasons = append(reasons, &pb.PendingReason{JobId: j.Id, Reason: g.reason})
			}
			continue
		}
		s.load++
		batch = append(batch, &pb.Assignment{JobId: j.Id, RunnerId: s.runner.Id})
		if len(batch) == maxBatch {
			if err := commit(batch); err != nil {
				return wake, err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		if err := commit(batch); err != nil {
			return wake, err
		}
	}
	if len(reasons) > 0 {
		if time.Since(d.lastReasons) < reasonEvery {
			next := d.lastReasons.Add(reasonEvery)
			if wake.IsZero() || next.Before(wake) {
				wake = next
			}
		} else {
			d.lastReasons = time.Now()
			if len(reasons) > maxReasons {
				reasons = reasons[:maxReasons]
			}
			if _, err := d.cfg.Apply(ctx, fsm.SetPendingReasonsType, &pb.SetPendingReasonsEntry{Reasons: reasons}); err != nil {
				d.logger.Warn("recording why jobs wait", "error", err)
			}
		}
	}
	return wake, nil
}

// matches reports whether job j may run on runner r at all (ignoring
// whether r can take it now).
func matches(j *pb.Job, r *pb.Runner) bool {
	if !profile.Matches(j.TargetRunnerId, j.TargetLabels, r.Id, r.Labels) {
		return false
	}
	if len(r.Projects) == 0 {
		return true
	}
	for _, p := range r.Projects {
		if p == j.Project {
			return true
		}
	}
	return false
}

// pick returns the group's runner with the lowest load ratio, taking
// equals in turn, or nil when none can take a job now.
func (d *Dispatcher) pick(g *group) *slot {
	if g.reason != "" {
		return nil
	}
	var ties []*slot
	best := 2.0
	for _, s := range g.slots {
		if !s.free() {
			continue
		}
		ratio := float64(s.load) / float64(s.runner.Capacity)
		switch {
		case ratio < best:
			best, ties = ratio, append(ties[:0], s)
		case ratio == best:
			ties = append(ties, s)
		}
	}
	if len(ties) == 0 {
		return nil
	}
	d.rr++
	return ties[d.rr%len(ties)]
}

func (d *Dispatcher) commit(ctx context.Context, batch []*pb.Assignment) error {
	res, err := d.cfg.Apply(ctx, fsm.AssignJobsType, &pb.AssignJobsEntry{Assignments: batch, Time: timestamppb.Now()})
	if err != nil {
		return err
	}
	if r, ok := res.(*fsm.AssignResult); ok {
		d.logger.Trace("assigned jobs", "count", len(r.Assigned))
	}
	return nil
}
