// Package dispatch is the leader's dispatcher: it matches pending jobs to
// usable runners with free slots and commits the assignments in batches.
// It keeps nothing that is not derived from the state store, so a new leader
// simply starts a new Dispatcher.
package dispatch

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// maxBatch bounds the assignments in one log entry, so one entry stays small
// enough to replicate quickly.
const maxBatch = 1024

// Config wires a dispatcher to its server.
type Config struct {
	State func() *state.Store
	Apply func(context.Context, fsm.MessageType, proto.Message) (any, error)
	// Usable reports whether a runner has an open stream right now.
	Usable func(runnerID string) bool
	Logger hclog.Logger
}

// Dispatcher assigns pending jobs to runners.
type Dispatcher struct {
	cfg    Config
	logger hclog.Logger
	kick   chan struct{}
	// rr breaks ties between equally loaded runners in turn.
	rr int
}

// New returns a dispatcher; Run starts it.
func New(cfg Config) *Dispatcher {
	return &Dispatcher{cfg: cfg, logger: cfg.Logger.Named("dispatcher"), kick: make(chan struct{}, 1)}
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
			if w := time.Until(wake); w < wait {
				wait = max(w, 0)
			}
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

type slot struct {
	runner *pb.Runner
	load   int
}

// pass makes one round of assignments. It returns the earliest time a
// delayed job becomes eligible (zero if none).
func (d *Dispatcher) pass(ctx context.Context, ws memdb.WatchSet) (time.Time, error) {
	st := d.cfg.State()
	pending := st.Jobs(ws, state.JobFilter{Status: state.StatusPending})
	var slots []*slot
	for _, r := range st.Runners(ws) {
		if r.Status != "adopted" || r.Draining || !d.cfg.Usable(r.Id) {
			continue
		}
		slots = append(slots, &slot{runner: r, load: len(st.ActiveJobs(ws, r.Id))})
	}
	if len(pending) == 0 || len(slots) == 0 {
		return time.Time{}, nil
	}
	sort.SliceStable(pending, func(a, b int) bool { return pending[a].Priority > pending[b].Priority })

	now := time.Now()
	var (
		wake  time.Time
		batch []*pb.Assignment
	)
	for _, j := range pending {
		if nb := j.NotBefore; nb != nil && nb.AsTime().After(now) {
			if wake.IsZero() || nb.AsTime().Before(wake) {
				wake = nb.AsTime()
			}
			continue
		}
		s := d.pick(slots)
		if s == nil {
			break
		}
		s.load++
		batch = append(batch, &pb.Assignment{JobId: j.Id, RunnerId: s.runner.Id})
		if len(batch) == maxBatch {
			if err := d.commit(ctx, batch); err != nil {
				return wake, err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		if err := d.commit(ctx, batch); err != nil {
			return wake, err
		}
	}
	return wake, nil
}

// pick returns the slot with the lowest load ratio, taking equals in turn,
// or nil when every runner is full.
func (d *Dispatcher) pick(slots []*slot) *slot {
	var ties []*slot
	best := 2.0
	for _, s := range slots {
		c := int(s.runner.Capacity)
		if s.load >= c {
			continue
		}
		ratio := float64(s.load) / float64(c)
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
		d.logger.Debug("assigned jobs", "count", len(r.Assigned))
	}
	return nil
}
