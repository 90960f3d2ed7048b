package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// history is a store driven through the write methods the FSM calls, with
// its own rising Raft index.
type historyFixture struct {
	t     *testing.T
	s     *Store
	index uint64
}

func newHistoryFixture(t *testing.T) *historyFixture {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return &historyFixture{t: t, s: s}
}

func (h *historyFixture) next() uint64 { h.index++; return h.index }

func at(sec int) *timestamppb.Timestamp {
	return timestamppb.New(now.AsTime().Add(time.Duration(sec) * time.Second))
}

// submit queues jobs with these ids, created at sec.
func (h *historyFixture) submit(sec int, ids ...string) {
	h.t.Helper()
	var jobs []*pb.Job
	for _, id := range ids {
		jobs = append(jobs, &pb.Job{Id: id, Project: "web", Name: "deploy", Workspace: "prod", CreatedAt: at(sec)})
	}
	if err := h.s.SubmitJobs(h.next(), jobs); err != nil {
		h.t.Fatal(err)
	}
}

// finish runs a submitted job to success: the runner reports it finished
// at runnerSec by its own clock, in an entry the servers wrote at doneSec.
func (h *historyFixture) finish(id string, runnerSec, doneSec int) {
	h.t.Helper()
	lease := h.next()
	if _, err := h.s.AssignJobs(lease, &pb.AssignJobsEntry{Time: at(doneSec), Assignments: []*pb.Assignment{{JobId: id, RunnerId: "r-1"}}}); err != nil {
		h.t.Fatal(err)
	}
	errs := h.s.ApplyReports(h.next(), at(doneSec), []*pb.RunnerMessage{
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: id, Lease: lease, Time: at(runnerSec)}}},
		{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: id, Lease: lease, Lines: []*pb.LogLine{{Text: "hello from " + id}}}}},
		{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: id, Lease: lease, Outcome: "succeeded", Time: at(runnerSec)}}},
	})
	for _, err := range errs {
		if err != nil {
			h.t.Fatalf("finishing %s: %v", id, err)
		}
	}
}

// collect applies one garbage-collection pass as the leader would: pick,
// then delete through an entry.
func (h *historyFixture) collect(cutoff time.Time, maxFinished int, nowSec int) []string {
	h.t.Helper()
	ids := h.s.Collectable(cutoff, maxFinished, 1000)
	if len(ids) > 0 {
		if err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: ids, Gc: true, Time: at(nowSec)}); err != nil {
			h.t.Fatal(err)
		}
	}
	return ids
}

func (h *historyFixture) ids(f JobFilter) []string {
	var out []string
	for _, j := range h.s.Jobs(nil, f) {
		out = append(out, j.Id)
	}
	return out
}

func TestGCByCountTakesTheOldestDone(t *testing.T) {
	h := newHistoryFixture(t)
	h.submit(0, "j-a", "j-b", "j-c", "j-d", "j-e", "j-run")
	// Done in another order than submitted: the oldest done go first.
	for i, id := range []string{"j-c", "j-a", "j-e", "j-b", "j-d"} {
		h.finish(id, 10+i, 10+i)
	}
	if got := h.s.Collectable(time.Time{}, 5, 100); len(got) != 0 {
		t.Fatalf("at the bound, Collectable = %v, want nothing", got)
	}
	got := h.collect(time.Time{}, 2, 20)
	if want := []string{"j-c", "j-a", "j-e"}; !slices.Equal(got, want) {
		t.Fatalf("collected %v, want the three done first %v", got, want)
	}
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-b", "j-d", "j-run"}) {
		t.Fatalf("jobs left %v, want j-b, j-d and the job in play", left)
	}
	if c, p, tombs := h.s.FinishedStats(); c != 2 || p != 0 || tombs != 3 {
		t.Fatalf("FinishedStats = %d collectable, %d pinned, %d tombstones; want 2, 0, 3", c, p, tombs)
	}
	for _, id := range got {
		if chunks := h.s.LogChunks(nil, id, 0); len(chunks) != 0 {
			t.Errorf("collected %s still has %d log chunks", id, len(chunks))
		}
		if !h.s.Collected(id) {
			t.Errorf("collected %s has no tombstone", id)
		}
		if _, err := h.s.JobByID(nil, id); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "deleted") {
			t.Errorf("JobByID(%s) = %v, want not found, saying it was deleted", id, err)
		}
	}
	// A submit reusing a collected id (a client's retry) does not run the
	// job again.
	h.submit(30, "j-a", "j-new")
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-b", "j-d", "j-run", "j-new"}) {
		t.Fatalf("after resubmitting j-a: jobs %v, want j-a not back", left)
	}
	if got := h.collect(time.Time{}, 2, 40); len(got) != 0 {
		t.Fatalf("second pass collected %v, want nothing", got)
	}
}

func TestGCByAgeCountsFromWhenTheServersRecordedTheFinish(t *testing.T) {
	h := newHistoryFixture(t)
	h.submit(0, "j-old", "j-mid", "j-new", "j-skew")
	h.finish("j-old", 100, 100)
	h.finish("j-mid", 200, 200)
	h.finish("j-new", 300, 300)
	// Its runner's clock is a day behind: by that clock it finished long
	// ago, but the servers recorded it at 300.
	h.finish("j-skew", 300-86400, 300)
	if j, _ := h.s.JobByID(nil, "j-skew"); !j.DoneAt.AsTime().Equal(at(300).AsTime()) {
		t.Fatalf("j-skew done_at = %v, want the entry's time %v", j.DoneAt.AsTime(), at(300).AsTime())
	}
	got := h.collect(at(250).AsTime(), 0, 400)
	if want := []string{"j-old", "j-mid"}; !slices.Equal(got, want) {
		t.Fatalf("collected %v, want %v", got, want)
	}
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-new", "j-skew"}) {
		t.Fatalf("jobs left %v", left)
	}
	// Both bounds off: nothing is collected.
	if got := h.s.Collectable(time.Time{}, 0, 100); len(got) != 0 {
		t.Fatalf("with no bound, Collectable = %v", got)
	}
}

// A pinned job is kept whatever its age or the count, a pin that lands
// between the leader's pick and its entry wins, and a user cannot delete
// it until it is unpinned.
func TestPinnedJobsAreKept(t *testing.T) {
	h := newHistoryFixture(t)
	h.submit(0, "j-1", "j-2", "j-3", "j-run")
	if err := h.s.PinJob(h.next(), &pb.PinJobEntry{JobId: "j-run", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"j-1", "j-2", "j-3", "j-run"} {
		h.finish(id, 10+i, 10+i)
	}
	if err := h.s.PinJob(h.next(), &pb.PinJobEntry{JobId: "j-1", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	if c, p, _ := h.s.FinishedStats(); c != 2 || p != 2 {
		t.Fatalf("FinishedStats = %d collectable, %d pinned; want 2 and 2", c, p)
	}
	picked := h.s.Collectable(at(1000).AsTime(), 0, 100)
	if !slices.Equal(picked, []string{"j-2", "j-3"}) {
		t.Fatalf("Collectable = %v, want only the unpinned", picked)
	}
	// j-2 is pinned after the leader picked it.
	if err := h.s.PinJob(h.next(), &pb.PinJobEntry{JobId: "j-2", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	if err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: picked, Gc: true, Time: at(1000)}); err != nil {
		t.Fatal(err)
	}
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-1", "j-2", "j-run"}) {
		t.Fatalf("jobs left %v, want the three pinned", left)
	}
	j, _ := h.s.JobByID(nil, "j-1")
	if !j.Pinned || j.Status != rpc.JobSucceeded || len(h.s.LogChunks(nil, "j-1", 0)) != 1 {
		t.Fatalf("pinned j-1: pinned %v, %s, %d log chunks", j.Pinned, j.Status, len(h.s.LogChunks(nil, "j-1", 0)))
	}
	err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: []string{"j-1"}})
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "pin -undo") {
		t.Fatalf("deleting pinned j-1: %v, want a conflict saying how to unpin", err)
	}
	if err := h.s.PinJob(h.next(), &pb.PinJobEntry{JobId: "j-1"}); err != nil {
		t.Fatal(err)
	}
	if got := h.collect(at(1000).AsTime(), 0, 1000); !slices.Equal(got, []string{"j-1"}) {
		t.Fatalf("after unpinning, collected %v, want j-1", got)
	}
	// A pin survives a retry and the finish after it.
	if err := h.s.RetryJob(h.next(), &pb.RetryJobEntry{JobId: "j-2", Time: at(2000)}); err != nil {
		t.Fatal(err)
	}
	if j, _ := h.s.JobByID(nil, "j-2"); !j.Pinned || j.DoneAt != nil {
		t.Fatalf("retried j-2: pinned %v, done_at %v; want pinned and not done", j.Pinned, j.DoneAt)
	}
	h.finish("j-2", 2001, 2001)
	if got := h.s.Collectable(at(5000).AsTime(), 0, 100); len(got) != 0 {
		t.Fatalf("Collectable = %v, want nothing: every finished job is pinned", got)
	}
}

func TestDeleteJob(t *testing.T) {
	h := newHistoryFixture(t)
	h.submit(0, "j-done", "j-queued")
	h.finish("j-done", 1, 1)
	for _, c := range []struct {
		id   string
		want error
		says string
	}{
		{"j-queued", ErrConflict, "only a finished job can be deleted"},
		{"j-nope", ErrNotFound, ""},
	} {
		err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: []string{c.id}})
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("deleting %s: %v, want %v saying %q", c.id, err, c.want, c.says)
		}
	}
	if err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: []string{"j-done"}, Time: at(2)}); err != nil {
		t.Fatal(err)
	}
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-queued"}) {
		t.Fatalf("jobs left %v", left)
	}
	if !h.s.Collected("j-done") || len(h.s.LogChunks(nil, "j-done", 0)) != 0 {
		t.Fatal("deleted j-done: no tombstone, or logs left")
	}
	// Garbage collection skips what is not finished instead of failing.
	if err := h.s.DeleteJobs(h.next(), &pb.DeleteJobsEntry{JobIds: []string{"j-queued", "j-nope"}, Gc: true}); err != nil {
		t.Fatal(err)
	}
	if left := h.ids(JobFilter{}); !slices.Equal(left, []string{"j-queued"}) || h.s.Collected("j-queued") {
		t.Fatalf("a gc entry naming a queued job changed it: jobs %v", left)
	}
}

// Tombstones are bounded by count and by age, oldest entries' forgotten
// first.
func TestTombstoneBounds(t *testing.T) {
	h := newHistory()
	day := int64(24 * time.Hour)
	id := func(i int) string { return fmt.Sprintf("j-%016x", i) }
	const batch = 1000
	for b := range MaxTombstones/batch + 2 {
		tb := &tombBatch{Index: uint64(b + 1), At: day}
		for i := range batch {
			tb.Keys = append(tb.Keys, tombKeyOf(id(b*batch+i)))
		}
		h.addTombstones(tb)
		h.forgetTombstones(day)
	}
	if h.tombCount != MaxTombstones || h.tombs.Len() != MaxTombstones {
		t.Fatalf("%d tombstones (%d keys) kept, want %d", h.tombCount, h.tombs.Len(), MaxTombstones)
	}
	if h.collected(id(2*batch-1)) || !h.collected(id(2*batch)) {
		t.Fatal("the oldest entries' tombstones were not the ones forgotten")
	}
	h.addTombstones(&tombBatch{Index: MaxTombstones, At: 3 * day, Keys: []uint64{tombKeyOf("j-late")}})
	h.forgetTombstones(3 * day)
	if h.tombCount != 1 || h.tombs.Len() != 1 || !h.collected("j-late") {
		t.Fatalf("%d tombstones after a delete two days later, want only the new one", h.tombCount)
	}
	if tombKeyOf("j-00000000000000ff") != 255 || tombKeyOf("j-1") == tombKeyOf("j-2") {
		t.Fatal("tombKeyOf")
	}
}

// pageAll walks every page of f from the newest, calling between(page)
// after each page.
func pageAll(s *Store, f JobFilter, size int, between func(page int)) []string {
	var out []string
	var cur *JobCursor
	for page := 0; ; page++ {
		jobs, more := s.JobPage(f, cur, size)
		for _, j := range jobs {
			out = append(out, j.Id)
		}
		if !more {
			return out
		}
		last := jobs[len(jobs)-1]
		cur = &JobCursor{CreateIndex: last.CreateIndex, ID: last.Id}
		if between != nil {
			between(page)
		}
	}
}

func TestJobPagesNewestFirst(t *testing.T) {
	h := newHistoryFixture(t)
	var all []string
	for i := range 12 {
		// Two jobs per entry: equal create indexes are ordered by id.
		a, b := fmt.Sprintf("j-%02da", i), fmt.Sprintf("j-%02db", i)
		h.submit(i, a, b)
		all = append(all, a, b)
	}
	// Finished and in-play jobs interleave in the order.
	for i, id := range all {
		if i%3 != 0 {
			h.finish(id, 100+i, 100+i)
		}
	}
	want := slices.Clone(all)
	slices.Reverse(want)
	for _, size := range []int{1, 2, 5, 24, 100} {
		if got := pageAll(h.s, JobFilter{}, size, nil); !slices.Equal(got, want) {
			t.Fatalf("pages of %d = %v\nwant %v", size, got, want)
		}
	}
	if jobs, more := h.s.JobPage(JobFilter{}, nil, len(all)); len(jobs) != len(all) || more {
		t.Fatalf("one page of exactly all: %d jobs, more %v", len(jobs), more)
	}
	// Filters apply before paging and agree with a plain scan.
	if err := h.s.PinJob(h.next(), &pb.PinJobEntry{JobId: "j-04a", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	other := []*pb.Job{
		{Id: "j-x1", Project: "api", Name: "build", Workspace: "dev", CreatedAt: at(3)},
		{Id: "j-x2", Project: "web", Name: "build", Workspace: "prod", CreatedAt: at(7)},
	}
	if err := h.s.SubmitJobs(h.next(), other); err != nil {
		t.Fatal(err)
	}
	h.finish("j-x2", 200, 200)
	for _, f := range []JobFilter{
		{Status: rpc.JobSucceeded}, {Status: rpc.JobPending}, {Project: "api"}, {Name: "build"},
		{Workspace: "prod"}, {Name: "deploy", Status: rpc.JobSucceeded}, {Workspace: "dev", Status: rpc.JobSucceeded},
		{CreatedAfter: at(3).AsTime()}, {CreatedBefore: at(3).AsTime()}, {CreatedAfter: at(2).AsTime(), CreatedBefore: at(8).AsTime(), Name: "deploy"},
	} {
		var scan []string
		for _, j := range h.s.Jobs(nil, JobFilter{}) {
			if f.matchJob(j) {
				scan = append(scan, j.Id)
			}
		}
		slices.Reverse(scan)
		if got := pageAll(h.s, f, 3, nil); !slices.Equal(got, scan) {
			t.Errorf("pages of %+v = %v, want %v", f, got, scan)
		}
		if n := h.s.CountJobs(f); n != len(scan) {
			t.Errorf("CountJobs(%+v) = %d, want %d", f, n, len(scan))
		}
	}
}

// Paging while jobs are submitted, finished, retried and collected misses
// no job that was there all along and repeats none.
func TestJobPagesWhileJobsArriveAndGo(t *testing.T) {
	h := newHistoryFixture(t)
	var initial []string
	for i := range 40 {
		id := fmt.Sprintf("j-%03d", i)
		h.submit(i, id)
		initial = append(initial, id)
		if i%2 == 0 {
			h.finish(id, 100+i, 100+i)
		}
	}
	collected := map[string]bool{}
	seq := 0
	got := pageAll(h.s, JobFilter{}, 4, func(page int) {
		// New jobs, one finishing at once; an old job retried; the oldest
		// finished ones collected.
		for range 3 {
			seq++
			id := fmt.Sprintf("j-new%03d", seq)
			h.submit(1000+seq, id)
			if seq%2 == 0 {
				h.finish(id, 1000+seq, 1000+seq)
			}
		}
		if page == 2 {
			if err := h.s.RetryJob(h.next(), &pb.RetryJobEntry{JobId: "j-010", Time: at(2000)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range h.collect(at(100+2*page).AsTime(), 0, 3000) {
			collected[id] = true
		}
	})
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] > 1 {
			t.Errorf("job %s listed twice", id)
		}
		if strings.HasPrefix(id, "j-new") {
			t.Errorf("job %s, submitted after the first page, listed", id)
		}
	}
	for _, id := range initial {
		if seen[id] == 0 && !collected[id] {
			t.Errorf("job %s missed: it was there all along and never collected", id)
		}
	}
	if len(collected) == 0 {
		t.Fatal("nothing was collected while paging: the test proves little")
	}
}
