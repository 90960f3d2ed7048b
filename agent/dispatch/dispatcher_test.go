package dispatch

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// world is a real FSM driven the way Raft drives it, with the dispatcher
// on top: no mock state store.
type world struct {
	t      *testing.T
	mu     sync.Mutex
	f      *fsm.FSM
	index  uint64
	usable map[string]bool
	d      *Dispatcher
}

func newWorld(t *testing.T) *world {
	f, err := fsm.New(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, f: f, usable: map[string]bool{}}
	w.d = New(Config{State: f.State, Apply: w.apply, Usable: func(id string) bool { return w.usable[id] }, Logger: hclog.NewNullLogger()})
	return w
}

func (w *world) apply(_ context.Context, t fsm.MessageType, body proto.Message) (any, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := fsm.Encode(t, body)
	if err != nil {
		return nil, err
	}
	w.index++
	res := w.f.Apply(&raft.Log{Index: w.index, Type: raft.LogCommand, Data: data})
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

func (w *world) must(t fsm.MessageType, body proto.Message) {
	w.t.Helper()
	if _, err := w.apply(context.Background(), t, body); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) runner(id string, capacity uint32, labels map[string]string, status string) {
	w.must(fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: id, Capacity: capacity, Labels: labels, Status: status, State: "ready"}})
	w.usable[id] = true
}

func (w *world) submit(n int, labels map[string]string) []string {
	var jobs []*pb.Job
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("j-%d-%d", w.index, i)
		ids = append(ids, id)
		jobs = append(jobs, &pb.Job{Id: id, Project: "p", TargetLabels: labels, CreatedAt: timestamppb.Now()})
	}
	w.must(fsm.SubmitJobsType, &pb.SubmitJobsEntry{Jobs: jobs})
	return ids
}

func (w *world) pass() {
	w.t.Helper()
	w.d.lastReasons = time.Time{}
	if _, err := w.d.pass(context.Background(), memdb.NewWatchSet()); err != nil {
		w.t.Fatal(err)
	}
}

// finishAll completes every active job, freeing all slots, and returns
// how many each runner had.
func (w *world) finishAll() map[string]int {
	counts := map[string]int{}
	for _, r := range w.f.State().Runners(nil) {
		for _, j := range w.f.State().ActiveJobs(nil, r.Id) {
			counts[r.Id]++
			w.must(fsm.FinishJobType, &pb.FinishJobEntry{Report: &pb.JobFinished{JobId: j.Id, Lease: j.Lease, Outcome: "succeeded", Time: timestamppb.Now()}})
		}
	}
	return counts
}

func TestFairnessEqualRunners(t *testing.T) {
	w := newWorld(t)
	for i := 0; i < 4; i++ {
		w.runner(fmt.Sprintf("r-%d", i), 8, nil, "adopted")
	}
	w.submit(1000, nil)
	total := map[string]int{}
	for i := 0; i < 200; i++ {
		w.pass()
		for id, n := range w.finishAll() {
			total[id] += n
		}
	}
	sum := 0
	for id, n := range total {
		sum += n
		if n < 225 || n > 275 {
			t.Errorf("runner %s ran %d of 1000 jobs; want 250 ±10%%", id, n)
		}
	}
	if sum != 1000 {
		t.Fatalf("%d jobs ran, want 1000", sum)
	}
}

func TestFairnessUnequalCapacity(t *testing.T) {
	w := newWorld(t)
	w.runner("small", 2, nil, "adopted")
	w.runner("big", 6, nil, "adopted")
	w.submit(800, nil)
	total := map[string]int{}
	for i := 0; i < 200; i++ {
		w.pass()
		for id, n := range w.finishAll() {
			total[id] += n
		}
	}
	if total["small"]+total["big"] != 800 {
		t.Fatalf("ran %v, want 800 in all", total)
	}
	// In proportion to capacity: 2:6 of 800 is 200:600, ±10%.
	if s := total["small"]; s < 180 || s > 220 {
		t.Errorf("small (capacity 2) ran %d, want 200 ±10%%", s)
	}
}

func TestCapacityNeverExceeded(t *testing.T) {
	w := newWorld(t)
	w.runner("r-a", 3, nil, "adopted")
	w.runner("r-b", 5, nil, "adopted")
	w.submit(100, nil)
	for i := 0; i < 5; i++ {
		w.pass()
		for _, r := range w.f.State().Runners(nil) {
			if n := len(w.f.State().ActiveJobs(nil, r.Id)); n > int(r.Capacity) {
				t.Fatalf("runner %s holds %d jobs over capacity %d", r.Id, n, r.Capacity)
			}
		}
	}
}

func TestLabelTargeting(t *testing.T) {
	w := newWorld(t)
	w.runner("prod-1", 10, map[string]string{"env": "prod", "os": "linux"}, "adopted")
	w.runner("dev-1", 10, map[string]string{"env": "dev"}, "adopted")
	prod := w.submit(5, map[string]string{"env": "prod"})
	dev := w.submit(5, map[string]string{"env": "dev"})
	w.pass()
	for _, id := range prod {
		if j, _ := w.f.State().JobByID(nil, id); j.RunnerId != "prod-1" {
			t.Errorf("prod job %s went to %q", id, j.RunnerId)
		}
	}
	for _, id := range dev {
		if j, _ := w.f.State().JobByID(nil, id); j.RunnerId != "dev-1" {
			t.Errorf("dev job %s went to %q", id, j.RunnerId)
		}
	}
}

func TestPriorityThenFIFO(t *testing.T) {
	w := newWorld(t)
	w.runner("r", 1, nil, "adopted")
	low := w.submit(1, nil)[0]
	w.must(fsm.SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{{Id: "j-high", Priority: 90, CreatedAt: timestamppb.Now()}}})
	w.pass()
	if j, _ := w.f.State().JobByID(nil, "j-high"); j.Status != rpc.JobAssigned {
		t.Fatalf("high-priority job is %s; it should go first", j.Status)
	}
	if j, _ := w.f.State().JobByID(nil, low); j.Status != rpc.JobPending {
		t.Fatalf("low-priority job is %s; the runner has one slot", j.Status)
	}
}

func TestPendingReasons(t *testing.T) {
	prod := map[string]string{"env": "prod"}
	cases := []struct {
		name  string
		setup func(w *world)
		want  string
	}{
		{"no runner at all", func(w *world) {}, "no adopted runner matches labels {env=prod}: start one with `outpost runner agent -label env=prod`"},
		{"only other labels", func(w *world) { w.runner("r-dev", 1, map[string]string{"env": "dev"}, "adopted") }, "no adopted runner matches labels {env=prod}"},
		{"all at capacity", func(w *world) {
			w.runner("r-1", 1, prod, "adopted")
			w.runner("r-2", 1, prod, "adopted")
			w.submit(2, prod)
			w.pass()
		}, "2 matching runners, all at capacity"},
		{"draining", func(w *world) {
			w.runner("r-7", 1, prod, "adopted")
			w.must(fsm.UpdateRunnerType, &pb.RunnerUpdateEntry{RunnerId: "r-7", Action: "drain"})
		}, "matching runner r-7 is draining"},
		{"pending adoption", func(w *world) { w.runner("r-8", 1, prod, "pending") }, "matching runner r-8 is pending adoption: run `outpost runner adopt r-8`"},
		{"down", func(w *world) {
			w.runner("r-9", 1, prod, "adopted")
			w.usable["r-9"] = false
		}, "matching runner r-9 is down"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.setup(w)
			id := w.submit(1, prod)[0]
			w.pass()
			j, _ := w.f.State().JobByID(nil, id)
			if j.Status != rpc.JobPending || !strings.HasPrefix(j.StatusReason, tc.want) {
				t.Fatalf("job is %s: %q; want pending: %q", j.Status, j.StatusReason, tc.want)
			}
		})
	}
}

// TestMatchingFollowsRunnerChanges checks that the matching kept from pass
// to pass is redone when a runner changes: a job no runner matched is
// placed once a runner is relabelled to match it, and no longer placed on
// a runner that was relabelled away.
func TestMatchingFollowsRunnerChanges(t *testing.T) {
	w := newWorld(t)
	w.runner("r-1", 4, map[string]string{"env": "staging"}, "adopted")
	first := w.submit(1, map[string]string{"env": "prod"})[0]
	w.pass()
	if j, _ := w.f.State().JobByID(nil, first); j.Status != rpc.JobPending {
		t.Fatalf("job for prod is %s before any prod runner exists", j.Status)
	}
	w.runner("r-1", 4, map[string]string{"env": "prod"}, "adopted")
	w.pass()
	if j, _ := w.f.State().JobByID(nil, first); j.Status != rpc.JobAssigned || j.RunnerId != "r-1" {
		t.Fatalf("job is %s on %q after r-1 became prod; want assigned to r-1", j.Status, j.RunnerId)
	}
	w.runner("r-1", 4, map[string]string{"env": "staging"}, "adopted")
	second := w.submit(1, map[string]string{"env": "prod"})[0]
	w.pass()
	if j, _ := w.f.State().JobByID(nil, second); j.Status != rpc.JobPending {
		t.Fatalf("second prod job is %s on %q after r-1 left prod; want pending", j.Status, j.RunnerId)
	}
}
