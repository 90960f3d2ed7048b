package state

import (
	"errors"
	"fmt"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

var now = timestamppb.New(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC))

// fixture is a store with one job assigned to runner r-1 under lease 2.
func fixture(t *testing.T, retry *pb.RetryPolicy) *Store {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SubmitJobs(1, []*pb.Job{{Id: "j-1", Retry: retry, CreatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AssignJobs(2, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJobTransitions(t *testing.T) {
	retryOnce := &pb.RetryPolicy{Attempts: 1, Delay: durationpb.New(10 * time.Second), Backoff: 2}
	finish := func(lease uint64, outcome string) func(*Store) error {
		return func(s *Store) error {
			return s.FinishJob(3, &pb.JobFinished{JobId: "j-1", Lease: lease, Outcome: outcome, ExitCode: 2, Reason: "step exited with code 2", Time: now})
		}
	}
	start := func(index, lease uint64) func(*Store) error {
		return func(s *Store) error {
			return s.JobStarted(index, &pb.JobStarted{JobId: "j-1", Lease: lease, Time: now})
		}
	}
	lost := func(index, lease uint64) func(*Store) error {
		return func(s *Store) error {
			return s.MarkLost(index, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: lease}}, Reason: "gone", Time: now})
		}
	}
	assign := func(index uint64) func(*Store) error {
		return func(s *Store) error {
			_, err := s.AssignJobs(index, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-2"}}})
			return err
		}
	}
	lateFinish := func(index, lease uint64, outcome string) func(*Store) error {
		return func(s *Store) error {
			return s.FinishJob(index, &pb.JobFinished{JobId: "j-1", Lease: lease, Outcome: outcome, Time: now})
		}
	}
	cases := []struct {
		name       string
		retry      *pb.RetryPolicy
		steps      []func(*Store) error
		wantErr    error
		wantStatus string
		wantTry    uint32
	}{
		{name: "start with current lease", steps: []func(*Store) error{
			func(s *Store) error { return s.JobStarted(3, &pb.JobStarted{JobId: "j-1", Lease: 2, Time: now}) },
		}, wantStatus: rpc.JobRunning, wantTry: 1},
		{name: "start with stale lease is fenced", steps: []func(*Store) error{
			func(s *Store) error { return s.JobStarted(3, &pb.JobStarted{JobId: "j-1", Lease: 1, Time: now}) },
		}, wantErr: ErrStaleLease, wantStatus: rpc.JobAssigned, wantTry: 1},
		{name: "finish succeeded", steps: []func(*Store) error{finish(2, "succeeded")}, wantStatus: rpc.JobSucceeded, wantTry: 1},
		{name: "finish twice is idempotent", steps: []func(*Store) error{finish(2, "succeeded"), finish(2, "succeeded")}, wantStatus: rpc.JobSucceeded, wantTry: 1},
		{name: "finish with stale lease is fenced", steps: []func(*Store) error{finish(7, "succeeded")}, wantErr: ErrStaleLease, wantStatus: rpc.JobAssigned, wantTry: 1},
		{name: "failure without retry ends failed", steps: []func(*Store) error{finish(2, "failed")}, wantStatus: rpc.JobFailed, wantTry: 1},
		{name: "failure with retry requeues", retry: retryOnce, steps: []func(*Store) error{finish(2, "failed")}, wantStatus: rpc.JobPending, wantTry: 2},
		{name: "old attempt cannot finish the retry", retry: retryOnce, steps: []func(*Store) error{finish(2, "failed"), finish(2, "succeeded")}, wantErr: ErrStaleLease, wantStatus: rpc.JobPending, wantTry: 2},
		{name: "cancel moves a running job to canceling", steps: []func(*Store) error{start(3, 2),
			func(s *Store) error { return s.CancelJob(4, &pb.CancelJobEntry{JobId: "j-1", Time: now}) },
		}, wantStatus: rpc.JobCanceling, wantTry: 1},
		{name: "cancel ends an assigned job that has not started", steps: []func(*Store) error{
			func(s *Store) error { return s.CancelJob(3, &pb.CancelJobEntry{JobId: "j-1", Time: now}) },
		}, wantStatus: rpc.JobCanceled, wantTry: 1},
		{name: "a start after the cancel of an assigned job is fenced", steps: []func(*Store) error{
			func(s *Store) error { return s.CancelJob(3, &pb.CancelJobEntry{JobId: "j-1", Time: now}) },
			start(4, 2),
		}, wantErr: ErrStaleLease, wantStatus: rpc.JobCanceled, wantTry: 1},
		{name: "cancel of a finished job conflicts", steps: []func(*Store) error{finish(2, "succeeded"),
			func(s *Store) error { return s.CancelJob(4, &pb.CancelJobEntry{JobId: "j-1", Time: now}) },
		}, wantErr: ErrConflict, wantStatus: rpc.JobSucceeded, wantTry: 1},
		{name: "lost job is requeued once by default", steps: []func(*Store) error{start(3, 2), lost(4, 2)},
			wantStatus: rpc.JobPending, wantTry: 2},
		{name: "lost twice ends lost", steps: []func(*Store) error{start(3, 2), lost(4, 2), assign(5), start(6, 5), lost(7, 5)},
			wantStatus: rpc.JobLost, wantTry: 2},
		{name: "an assignment that never started is taken back as the same attempt", steps: []func(*Store) error{lost(3, 2)},
			wantStatus: rpc.JobPending, wantTry: 1},
		{name: "assigned_only leaves a started attempt alone", steps: []func(*Store) error{start(3, 2),
			func(s *Store) error {
				return s.MarkLost(4, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 2}}, AssignedOnly: true, Reason: "late", Time: now})
			},
		}, wantStatus: rpc.JobRunning, wantTry: 1},
		{name: "a lost attempt's late result is taken while the job waits", steps: []func(*Store) error{start(3, 2), lost(4, 2), lateFinish(5, 2, "succeeded")},
			wantStatus: rpc.JobSucceeded, wantTry: 1},
		{name: "a lost attempt's late result withdraws an assignment not started", steps: []func(*Store) error{start(3, 2), lost(4, 2), assign(5), lateFinish(6, 2, "succeeded")},
			wantStatus: rpc.JobSucceeded, wantTry: 1},
		{name: "a lost attempt's late failure is retried as usual", retry: retryOnce, steps: []func(*Store) error{start(3, 2), lost(4, 2), lateFinish(5, 2, "failed")},
			wantStatus: rpc.JobPending, wantTry: 2},
		{name: "a lost attempt's late result is refused once a newer one started", steps: []func(*Store) error{start(3, 2), lost(4, 2), assign(5), start(6, 5), lateFinish(7, 2, "succeeded")},
			wantErr: ErrStaleLease, wantStatus: rpc.JobRunning, wantTry: 2},
		{name: "a late result replaces lost", steps: []func(*Store) error{start(3, 2), lost(4, 2), assign(5), start(6, 5), lost(7, 5), lateFinish(8, 5, "succeeded")},
			wantStatus: rpc.JobSucceeded, wantTry: 2},
		{name: "a runner that stopped the attempt itself loses it", steps: []func(*Store) error{start(3, 2), lateFinish(4, 2, "lost")},
			wantStatus: rpc.JobPending, wantTry: 2},
		{name: "a self-stopped report of a lost attempt changes nothing", steps: []func(*Store) error{start(3, 2), lost(4, 2), lateFinish(5, 2, "lost")},
			wantErr: ErrStaleLease, wantStatus: rpc.JobPending, wantTry: 2},
		{name: "lost with stale lease is ignored", steps: []func(*Store) error{
			func(s *Store) error {
				return s.MarkLost(3, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 1}}, Reason: "gone", Time: now})
			},
		}, wantStatus: rpc.JobAssigned, wantTry: 1},
		{name: "canceling job whose runner is lost ends canceled", steps: []func(*Store) error{start(3, 2),
			func(s *Store) error { return s.CancelJob(4, &pb.CancelJobEntry{JobId: "j-1", Time: now}) },
			lost(5, 2),
		}, wantStatus: rpc.JobCanceled, wantTry: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := fixture(t, tc.retry)
			var err error
			for _, step := range tc.steps {
				err = step(s)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("last step error = %v, want %v", err, tc.wantErr)
			}
			j, err := s.JobByID(nil, "j-1")
			if err != nil {
				t.Fatal(err)
			}
			if j.Status != tc.wantStatus || j.Attempt != tc.wantTry {
				t.Fatalf("job is %s attempt %d (%s), want %s attempt %d", j.Status, j.Attempt, j.StatusReason, tc.wantStatus, tc.wantTry)
			}
		})
	}
}

func TestRetryDelayGrowsWithBackoff(t *testing.T) {
	s := fixture(t, &pb.RetryPolicy{Attempts: 3, Delay: durationpb.New(10 * time.Second), Backoff: 3})
	lease := uint64(2)
	for attempt, wantDelay := range []time.Duration{10 * time.Second, 30 * time.Second, 90 * time.Second} {
		if err := s.FinishJob(lease+1, &pb.JobFinished{JobId: "j-1", Lease: lease, Outcome: "failed", Time: now}); err != nil {
			t.Fatalf("attempt %d: %v", attempt+1, err)
		}
		j, _ := s.JobByID(nil, "j-1")
		if got := j.NotBefore.AsTime().Sub(now.AsTime()); got != wantDelay {
			t.Fatalf("after attempt %d the delay is %s, want %s", attempt+1, got, wantDelay)
		}
		lease += 2
		if _, err := s.AssignJobs(lease, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-1"}}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLogChunksIterateInNumericOrder(t *testing.T) {
	s := fixture(t, nil)
	for i := 0; i < 300; i++ {
		if err := s.AppendLogs(uint64(3+i), &pb.JobLogs{JobId: "j-1", Lease: 2, Lines: []*pb.LogLine{{Text: "x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	chunks := s.LogChunks(nil, "j-1", 250)
	if len(chunks) != 50 || chunks[0].Seq != 251 || chunks[49].Seq != 300 {
		t.Fatalf("after seq 250 got %d chunks starting at %d", len(chunks), chunks[0].Seq)
	}
}

func TestJobIDPrefix(t *testing.T) {
	s, _ := New()
	_ = s.SubmitJobs(1, []*pb.Job{{Id: "j-abc1"}, {Id: "j-abc2"}, {Id: "j-xyz"}})
	if j, err := s.JobByID(nil, "j-x"); err != nil || j.Id != "j-xyz" {
		t.Fatalf("prefix j-x: %v %v", j, err)
	}
	if _, err := s.JobByID(nil, "j-abc"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("prefix j-abc: err = %v, want ambiguous", err)
	}
	if _, err := s.JobByID(nil, "j-nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("j-nope: err = %v, want not found", err)
	}
}

// The errors of a lookup say why, in the words the CLI and the API show.
func TestJobLookupMessages(t *testing.T) {
	s, _ := New()
	var jobs []*pb.Job
	for i := range 7 {
		jobs = append(jobs, &pb.Job{Id: fmt.Sprintf("j-%x0000", i)})
	}
	_ = s.SubmitJobs(1, jobs)
	now := timestamppb.Now()
	// Two of them finished: the history counts too.
	if _, err := s.AssignJobs(2, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-00000", RunnerId: "r-1"}, {JobId: "j-60000", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"j-00000", "j-60000"} {
		if err := s.FinishJob(3, &pb.JobFinished{JobId: id, Lease: 2, Outcome: "succeeded", Time: now}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ id, want string }{
		{"j-nope", `job "j-nope": not found`},
		{"j-", `prefix "j-" matches 7 jobs: j-00000, j-10000, j-20000, j-30000, j-40000, …: ambiguous id prefix`},
		{"j-", `prefix "j-" matches 7 jobs: j-00000, j-10000, j-20000, j-30000, j-40000, …: ambiguous id prefix`},
	} {
		if _, err := s.JobByID(nil, tc.id); err == nil || err.Error() != tc.want {
			t.Errorf("JobByID(%q) = %v\nwant %s", tc.id, err, tc.want)
		}
	}
	_ = s.SubmitJobs(4, []*pb.Job{{Id: "j-a1"}, {Id: "j-a2"}})
	if _, err := s.JobByID(nil, "j-a"); err == nil || err.Error() != `prefix "j-a" matches 2 jobs: j-a1, j-a2: ambiguous id prefix` {
		t.Errorf("JobByID(j-a) = %v", err)
	}
}

// A finish that carries log lines updates the job twice in one transaction;
// the slot index must still drop the job (a regression: it once kept it).
func TestFinishWithLinesFreesRunnerSlot(t *testing.T) {
	s := fixture(t, nil)
	if got := len(s.ActiveJobs(nil, "r-1")); got != 1 {
		t.Fatalf("before finish: %d active jobs, want 1", got)
	}
	err := s.FinishJob(3, &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: now,
		Lines: []*pb.LogLine{{Text: "last words"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.ActiveJobs(nil, "r-1")); got != 0 {
		t.Fatalf("after finish: %d active jobs, want 0", got)
	}
}

// TestJobFilters lists jobs of every status in two projects by each filter,
// against a plain scan: jobs in play and finished jobs are in different
// tables and indexes, and every filter must find both kinds.
func TestJobFilters(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var jobs []*pb.Job
	for i, p := range []string{"web", "api", "web", "api", "web", "api", "web"} {
		jobs = append(jobs, &pb.Job{Id: fmt.Sprintf("j-%d", i), Project: p, CreatedAt: now})
	}
	if err := s.SubmitJobs(1, jobs); err != nil {
		t.Fatal(err)
	}
	// j-0 stays pending; j-1..j-6 are assigned at lease 2.
	var as []*pb.Assignment
	for _, j := range jobs[1:] {
		as = append(as, &pb.Assignment{JobId: j.Id, RunnerId: "r-1"})
	}
	if _, err := s.AssignJobs(2, &pb.AssignJobsEntry{Time: now, Assignments: as}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.JobStarted(3, &pb.JobStarted{JobId: "j-2", Lease: 2, Time: now}))
	must(s.JobStarted(3, &pb.JobStarted{JobId: "j-3", Lease: 2, Time: now}))
	must(s.JobStarted(3, &pb.JobStarted{JobId: "j-6", Lease: 2, Time: now}))
	must(s.CancelJob(4, &pb.CancelJobEntry{JobId: "j-3", Time: now}))
	must(s.FinishJob(5, &pb.JobFinished{JobId: "j-4", Lease: 2, Outcome: "succeeded", Time: now}))
	must(s.FinishJob(6, &pb.JobFinished{JobId: "j-5", Lease: 2, Outcome: "failed", Time: now}))
	must(s.MarkLost(7, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-6", Lease: 2}}, Reason: "gone", Time: now}))
	// Requeued once, then lost for good.
	if _, err := s.AssignJobs(8, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-6", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	must(s.JobStarted(9, &pb.JobStarted{JobId: "j-6", Lease: 8, Time: now}))
	must(s.MarkLost(9, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-6", Lease: 8}}, Reason: "gone", Time: now}))

	everything := s.Jobs(nil, JobFilter{})
	if len(everything) != len(jobs) {
		t.Fatalf("%d jobs listed, want %d", len(everything), len(jobs))
	}
	statuses := map[string]bool{}
	for _, j := range everything {
		statuses[j.Status] = true
	}
	for _, want := range []string{rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling, rpc.JobSucceeded, rpc.JobFailed, rpc.JobLost} {
		if !statuses[want] {
			t.Fatalf("fixture has no %s job; statuses: %v", want, statuses)
		}
	}
	for _, status := range []string{"", rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling, rpc.JobSucceeded, rpc.JobFailed, rpc.JobLost} {
		for _, project := range []string{"", "web", "api", "none"} {
			var want []string
			for _, j := range everything {
				if (status == "" || j.Status == status) && (project == "" || j.Project == project) {
					want = append(want, j.Id)
				}
			}
			f := JobFilter{Status: status, Project: project}
			var got []string
			for _, j := range s.Jobs(nil, f) {
				got = append(got, j.Id)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Jobs(%+v) = %v, want %v", f, got, want)
			}
			if n := s.CountJobs(f); n != len(want) {
				t.Errorf("CountJobs(%+v) = %d, want %d", f, n, len(want))
			}
		}
	}
}

// TestLogsFollowAJobIntoHistoryAndBack checks a job's logs read the same
// while it runs, once it finished (its chunks then live in its history
// row) and after a retry moves it back, and that a reader following the
// logs is woken when they move.
func TestLogsFollowAJobIntoHistoryAndBack(t *testing.T) {
	s := fixture(t, nil)
	texts := func() []string {
		var out []string
		for _, c := range s.LogChunks(nil, "j-1", 0) {
			for _, l := range c.Lines {
				out = append(out, fmt.Sprintf("%d:%s", c.Seq, l.Data))
			}
		}
		return out
	}
	if err := s.AppendLogs(3, &pb.JobLogs{JobId: "j-1", Lease: 2, Lines: []*pb.LogLine{{Text: "one"}}}); err != nil {
		t.Fatal(err)
	}
	ws := memdb.NewWatchSet()
	if got := s.LogChunks(ws, "j-1", 1); len(got) != 0 {
		t.Fatalf("chunks after seq 1 = %v, want none yet", got)
	}
	if err := s.FinishJob(4, &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "failed", Time: now, Lines: []*pb.LogLine{{Text: "two"}}}); err != nil {
		t.Fatal(err)
	}
	if ws.Watch(time.After(time.Second)) {
		t.Fatal("a reader waiting for more logs was not woken by the job finishing")
	}
	want := "[1:one 2:two]"
	if got := fmt.Sprint(texts()); got != want {
		t.Fatalf("logs of the finished job = %s, want %s", got, want)
	}
	if got := s.LogChunks(nil, "j-1", 1); len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("chunks of the finished job after seq 1 = %v, want seq 2 only", got)
	}
	if n := len(allChunks(s.db.Txn(false))); n != 0 {
		t.Fatalf("%d chunks left in the log table after the job finished", n)
	}
	if err := s.RetryJob(5, &pb.RetryJobEntry{JobId: "j-1", Time: now}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(texts()); got != want {
		t.Fatalf("logs after a retry = %s, want %s", got, want)
	}
	if _, err := s.AssignJobs(6, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishJob(7, &pb.JobFinished{JobId: "j-1", Lease: 6, Outcome: "succeeded", Time: now, Lines: []*pb.LogLine{{Text: "three"}}}); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(texts()), "[1:one 2:two 3:three]"; got != want {
		t.Fatalf("logs after the second attempt = %s, want %s", got, want)
	}
	if err := s.DeleteJobs(8, &pb.DeleteJobsEntry{JobIds: []string{"j-1"}}); err != nil {
		t.Fatal(err)
	}
	if got := texts(); len(got) != 0 {
		t.Fatalf("logs of a deleted job = %v, want none", got)
	}
}

// TestHistoryPrefixAndSnapshots checks id prefixes across jobs in play and
// finished ones, and that the history tree, changed in place within a
// write, is never changed under a reader holding an older view.
func TestHistoryPrefixAndSnapshots(t *testing.T) {
	s, _ := New()
	if err := s.SubmitJobs(1, []*pb.Job{{Id: "j-abc1"}, {Id: "j-abc2"}, {Id: "j-xyz"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AssignJobs(2, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-abc2", RunnerId: "r-1"}, {JobId: "j-xyz", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	before := s.Snapshot()
	for _, id := range []string{"j-abc2", "j-xyz"} {
		if err := s.FinishJob(3, &pb.JobFinished{JobId: id, Lease: 2, Outcome: "succeeded", Time: now}); err != nil {
			t.Fatal(err)
		}
	}
	after := s.Snapshot()
	if err := s.RetryJob(4, &pb.RetryJobEntry{JobId: "j-xyz", Time: now}); err != nil {
		t.Fatal(err)
	}
	if j, err := s.JobByID(nil, "j-x"); err != nil || j.Id != "j-xyz" || j.Status != rpc.JobPending {
		t.Fatalf("prefix j-x after retry: %v %v", j, err)
	}
	if j, err := s.JobByID(nil, "j-abc2"); err != nil || j.Status != rpc.JobSucceeded {
		t.Fatalf("finished j-abc2: %v %v", j, err)
	}
	if _, err := s.JobByID(nil, "j-abc"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("prefix j-abc (one in play, one finished): err = %v, want ambiguous", err)
	}
	finished := func(sn *Snapshot) []string {
		var ids []string
		_ = sn.FinishedJobs(func(raw []byte, _ [][]byte) error {
			j := &pb.Job{}
			if err := proto.Unmarshal(raw, j); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, j.Id)
			return nil
		})
		return ids
	}
	for _, tc := range []struct {
		name string
		sn   *Snapshot
		want string
	}{
		{"before the finishes", before, "[]"},
		{"after the finishes", after, "[j-abc2 j-xyz]"},
		{"now", s.Snapshot(), "[j-abc2]"},
	} {
		if got := fmt.Sprint(finished(tc.sn)); got != tc.want {
			t.Errorf("finished jobs in the view %s = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestHistoryReadersWhileWriting reads finished jobs from older views and
// the live store while jobs finish and are retried (run it with -race):
// the history tree is cloned on write and must never change under a
// reader.
func TestHistoryReadersWhileWriting(t *testing.T) {
	s, _ := New()
	const n = 200
	var jobs []*pb.Job
	for i := range n {
		jobs = append(jobs, &pb.Job{Id: fmt.Sprintf("j-%03d", i), Project: "web"})
	}
	if err := s.SubmitJobs(1, jobs); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			view := s.Snapshot()
			finished := 0
			_ = view.FinishedJobs(func([]byte, [][]byte) error { finished++; return nil })
			if inPlay := len(view.Jobs()); inPlay+finished != n || view.JobCount() != n {
				readErr <- fmt.Errorf("a view holds %d jobs in play and %d finished (count %d); want %d in all", inPlay, finished, view.JobCount(), n)
				return
			}
			_ = s.CountJobs(JobFilter{Status: rpc.JobSucceeded, Project: "web"})
			_, _ = s.JobByID(nil, "j-1")
		}
	}()
	index := uint64(2)
	for i, j := range jobs {
		if _, err := s.AssignJobs(index, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: j.Id, RunnerId: "r-1"}}}); err != nil {
			t.Fatal(err)
		}
		lease := index
		index++
		if err := s.FinishJob(index, &pb.JobFinished{JobId: j.Id, Lease: lease, Outcome: "succeeded", Time: now, Lines: []*pb.LogLine{{Text: "ok"}}}); err != nil {
			t.Fatal(err)
		}
		index++
		if i%3 == 0 {
			if err := s.RetryJob(index, &pb.RetryJobEntry{JobId: j.Id, Time: now}); err != nil {
				t.Fatal(err)
			}
			index++
		}
	}
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if got, want := s.CountJobs(JobFilter{Status: rpc.JobSucceeded}), n-(n+2)/3; got != want {
		t.Fatalf("%d jobs succeeded, want %d", got, want)
	}
}

// A batch holding a job's start, logs and result stores the job once with
// every report's change, and a refused report in it changes nothing.
func TestReportBatchAppliesEveryReportOfAJob(t *testing.T) {
	s := fixture(t, nil)
	if err := s.SubmitJobs(3, []*pb.Job{{Id: "j-2", CreatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AssignJobs(4, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-2", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	started := timestamppb.New(now.AsTime().Add(time.Second))
	done := timestamppb.New(now.AsTime().Add(2 * time.Second))
	line := func(text string) []*pb.LogLine { return []*pb.LogLine{{Time: started, Stream: "stdout", Text: text}} }
	errs := s.ApplyReports(5, now, []*pb.RunnerMessage{
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: "j-1", Lease: 2, Time: started}}},
		{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: "j-2", Lease: 2, Time: started}}}, // stale: j-2 is lease 4
		{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: "j-1", Lease: 2, Lines: line("one")}}},
		{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: done, Lines: line("two")}}},
		{Msg: &pb.RunnerMessage_Logs{Logs: &pb.JobLogs{JobId: "j-1", Lease: 2, Lines: line("late")}}}, // after the result
	})
	for i, want := range []error{nil, ErrStaleLease, nil, nil, ErrStaleLease} {
		if !errors.Is(errs[i], want) || (want == nil && errs[i] != nil) {
			t.Errorf("report %d: err = %v, want %v", i, errs[i], want)
		}
	}
	j1, err := s.JobByID(nil, "j-1")
	if err != nil {
		t.Fatal(err)
	}
	if j1.Status != rpc.JobSucceeded || !proto.Equal(j1.StartedAt, started) || !proto.Equal(j1.FinishedAt, done) || j1.ModifyIndex != 5 || j1.LogChunks != 2 {
		t.Errorf("j-1 = %s started %v finished %v modify %d chunks %d; want succeeded, both times, modify 5, 2 chunks",
			j1.Status, j1.StartedAt.AsTime(), j1.FinishedAt.AsTime(), j1.ModifyIndex, j1.LogChunks)
	}
	var texts []string
	for _, c := range s.LogChunks(nil, "j-1", 0) {
		for _, l := range c.Lines {
			texts = append(texts, string(l.Data))
		}
	}
	if fmt.Sprint(texts) != "[one two]" {
		t.Errorf("j-1 logs = %v, want [one two]", texts)
	}
	j2, err := s.JobByID(nil, "j-2")
	if err != nil {
		t.Fatal(err)
	}
	if j2.Status != rpc.JobAssigned || j2.StartedAt != nil || j2.ModifyIndex != 4 {
		t.Errorf("j-2 = %s started %v modify %d; the stale start must leave it assigned at index 4", j2.Status, j2.StartedAt, j2.ModifyIndex)
	}
}
