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
	"github.com/outpost-run/outpost/jobspec/profile"
	"github.com/outpost-run/outpost/rpc"
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
	// matched is kept from pass to pass while the runners are the same
	// objects: which runners each kind of job may use. Matching every
	// group against thousands of runners on every pass was most of a
	// pass's cost, and the runner table changes rarely.
	matched matchCache
}

// matchCache holds a slot per runner, in the order the state store lists
// them, and for each group key the slots that match it.
type matchCache struct {
	slots  []*slot
	groups map[string][]*slot
}

// refresh makes the cache fit runners: kept when every runner is the very
// object it was built from (memdb hands out the same pointer until a
// runner changes), rebuilt otherwise.
func (c *matchCache) refresh(runners []*pb.Runner) {
	same := c.groups != nil && len(c.slots) == len(runners)
	for i := 0; same && i < len(runners); i++ {
		same = c.slots[i].runner == runners[i]
	}
	if same {
		return
	}
	c.slots = make([]*slot, len(runners))
	for i, r := range runners {
		c.slots[i] = &slot{runner: r}
	}
	c.groups = map[string][]*slot{}
}

// maxCachedGroups bounds the cache: each group holds a slot pointer per
// matching runner, and the kinds of job (targets times projects) seen
// since the runners last changed could otherwise grow without end.
const maxCachedGroups = 1024

// members returns the slots that jobs like j may use.
func (c *matchCache) members(key string, j *pb.Job) []*slot {
	if m, ok := c.groups[key]; ok {
		return m
	}
	if len(c.groups) >= maxCachedGroups {
		c.groups = map[string][]*slot{}
	}
	m := []*slot{}
	for _, s := range c.slots {
		if matches(j, s.runner) {
			m = append(m, s)
		}
	}
	c.groups[key] = m
	return m
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

// minPassGap spaces dispatch passes under load, so a burst of submits is
// placed by one pass (and one log entry) rather than one pass each.
const minPassGap = 3 * time.Millisecond

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	var last time.Time
	for ctx.Err() == nil {
		if gap := minPassGap - time.Since(last); gap > 0 {
			time.Sleep(gap)
		}
		last = time.Now()
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
	d.matched.refresh(st.Runners(ws))
	loads := st.ActiveCounts(ws)
	free := 0
	for _, s := range d.matched.slots {
		r := s.runner
		// Liveness and load are not in the runner objects; they are read
		// afresh every pass.
		s.usable, s.load = r.Status == rpc.RunnerAdopted && !r.Draining && d.cfg.Usable(r.Id), 0
		if s.usable {
			s.load = loads[r.Id]
			free += max(int(r.Capacity)-s.load, 0)
		}
	}

	now := time.Now()
	reasonsDue := now.Sub(d.lastReasons) >= reasonEvery
	var (
		wake     time.Time
		batch    []*pb.Assignment
		reasons  []*pb.PendingReason
		groups   = map[string]*group{}
		unplaced bool
		err      error
	)
	// The queue is in dispatch order (priority, then FIFO); once every
	// slot is taken, the rest can only wait, and unless their reasons are
	// due there is no need to look at them.
	st.Queue(ws, func(j *pb.Job) bool {
		if free == 0 && !reasonsDue {
			unplaced = true
			return false
		}
		if nb := j.NotBefore; nb != nil && nb.AsTime().After(now) {
			if wake.IsZero() || nb.AsTime().Before(wake) {
				wake = nb.AsTime()
			}
			return true
		}
		key := groupKey(j)
		g, ok := groups[key]
		if !ok {
			g = &group{slots: d.matched.members(key, j)}
			groups[key] = g
		}
		s := d.pick(g)
		if s == nil {
			unplaced = true
			if reasonsDue {
				if g.reason == "" {
					g.reason = explain(j, g.slots)
				}
				if j.StatusReason != g.reason && len(reasons) < maxReasons {
					reasons = append(reasons, &pb.PendingReason{JobId: j.Id, Reason: g.reason})
				}
			}
			return true
		}
		s.load++
		free--
		batch = append(batch, &pb.Assignment{JobId: j.Id, RunnerId: s.runner.Id})
		if len(batch) == maxBatch {
			if err = commit(batch); err != nil {
				return false
			}
			batch = nil
		}
		return true
	})
	if err != nil {
		return wake, err
	}
	if len(batch) > 0 {
		if err := commit(batch); err != nil {
			return wake, err
		}
	}
	switch {
	case len(reasons) > 0:
		d.lastReasons = time.Now()
		if _, err := d.cfg.Apply(ctx, fsm.SetPendingReasonsType, &pb.SetPendingReasonsEntry{Reasons: reasons}); err != nil {
			d.logger.Warn("recording why jobs wait", "error", err)
		}
	case unplaced && !reasonsDue:
		// Come back when reasons are due, even if nothing else changes.
		if next := d.lastReasons.Add(reasonEvery); wake.IsZero() || next.Before(wake) {
			wake = next
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
