package state

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Lines of these tests cost 100 bytes each (62 of output, "stdout", 32)
// against a limit of 2000: 20 lines per attempt.
const (
	testLineData = 62
	testLimit    = 2000
)

func testLine(n uint64) *pb.LogLine {
	return &pb.LogLine{Time: now, Stream: "stdout", Data: fmt.Appendf(nil, "%-*s", testLineData, fmt.Sprintf("line %d", n))}
}

// logsOf is a live report of lines first to last (numbered from 1).
func logsOf(first, last uint64, tail bool) *pb.JobLogs {
	r := &pb.JobLogs{JobId: "j-1", Lease: 2, FirstLine: first, FirstByte: (first - 1) * testLineData, Tail: tail}
	for n := first; n <= last; n++ {
		r.Lines = append(r.Lines, testLine(n))
	}
	return r
}

func final(r *pb.JobLogs, piece uint32, replay bool) *pb.JobLogs {
	r.FinalPiece, r.Replay = piece, replay
	return r
}

func logFixture(t *testing.T) *Store {
	t.Helper()
	s := fixture(t, nil)
	s.maxLogBytes = testLimit
	if err := s.JobStarted(3, &pb.JobStarted{JobId: "j-1", Lease: 2, Time: now}); err != nil {
		t.Fatal(err)
	}
	return s
}

// storedLog is the job's log as a reader gets it: each line, and outpost's
// own as "! text".
func storedLog(s *Store) []string {
	var out []string
	for _, c := range s.LogChunks(nil, "j-1", 0) {
		for _, l := range c.Lines {
			if l.Stream == "system" {
				out = append(out, "! "+string(l.Data))
			} else {
				out = append(out, strings.TrimSpace(string(l.Data)))
			}
		}
	}
	return out
}

// wantLog is head lines 1..headEnd, then a marker when given, then lines
// tailFrom..tailTo.
func checkLog(t *testing.T, s *Store, headEnd uint64, marker string, tailFrom, tailTo uint64) {
	t.Helper()
	var want []string
	for n := uint64(1); n <= headEnd; n++ {
		want = append(want, fmt.Sprintf("line %d", n))
	}
	if marker != "" {
		want = append(want, "! "+marker)
	}
	for n := tailFrom; n <= tailTo && tailFrom > 0; n++ {
		want = append(want, fmt.Sprintf("line %d", n))
	}
	got := storedLog(s)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("stored log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func apply(t *testing.T, s *Store, index uint64, r *pb.JobLogs) {
	t.Helper()
	if err := s.AppendLogs(index, r); err != nil {
		t.Fatalf("logs %d-%d: %v", r.FirstLine, r.FirstLine+uint64(len(r.Lines))-1, err)
	}
}

func markerFor(lines uint64) string {
	return fmt.Sprintf("outpost: %d lines (%d bytes) of output left out here: the log of an attempt keeps its first and its last output, at most %d bytes",
		lines, lines*testLineData, testLimit)
}

// The tail is a ring: past the limit its oldest chunks go, and the marker
// says how much lies between head and tail.
func TestLogTailIsARing(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 5, false))
	for n, i := uint64(6), uint64(5); n <= 48; n, i = n+3, i+1 {
		apply(t, s, i, logsOf(n, n+2, true))
	}
	// Room for 15 tail lines beside the 5 of the head: 36..50.
	checkLog(t, s, 5, markerFor(30), 36, 50)
	j, _ := s.JobByID(nil, "j-1")
	if j.LogDroppedLines != 30 || j.LogDroppedBytes != 30*testLineData || !j.LogsTruncated {
		t.Errorf("job says %d lines, %d bytes dropped (truncated %v); want 30, %d", j.LogDroppedLines, j.LogDroppedBytes, j.LogsTruncated, 30*testLineData)
	}
	if j.LogBytes != 20*testLineData {
		t.Errorf("log bytes %d, want %d", j.LogBytes, 20*testLineData)
	}
}

// What cannot fit is refused, and changes nothing.
func TestLogPastTheLimitIsRefused(t *testing.T) {
	s := logFixture(t)
	if err := s.AppendLogs(4, logsOf(1, 21, false)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a head of 21 lines: %v, want refused as invalid", err)
	}
	apply(t, s, 5, logsOf(1, 5, false))
	if err := s.AppendLogs(6, logsOf(6, 21, true)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("16 tail lines beside a head of 5: %v, want refused as invalid", err)
	}
	if err := s.AppendLogs(7, logsOf(6, 6, false)); err != nil {
		t.Fatal(err)
	}
	apply(t, s, 8, logsOf(7, 7, true))
	if err := s.AppendLogs(9, logsOf(8, 8, false)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("head lines after the tail began: %v, want refused", err)
	}
	checkLog(t, s, 7, "", 0, 0)
}

// A report sent twice is stored once; a hole is said where it is, until
// it lies between head and tail, where the marker says it.
func TestLogDuplicatesAndHoles(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 5, false))
	apply(t, s, 5, logsOf(1, 5, false))
	apply(t, s, 6, logsOf(4, 8, true))
	gap := logsOf(20, 22, true)
	gap.SkipCause, gap.RateBytes = "rate", 4096
	apply(t, s, 7, gap)
	got := storedLog(s)
	note := "! outpost: 11 lines (682 bytes) not sent live: this job printed faster than its runner sends logs (4096 bytes/s); the end of its output is kept whole"
	if len(got) != 12 || got[8] != note || got[9] != "line 20" {
		t.Fatalf("stored log:\n%s", strings.Join(got, "\n"))
	}
	// Lines 6-8 go to make room: the note's hole is now the marker's.
	for n, i := uint64(23), uint64(8); n <= 35; n, i = n+3, i+1 {
		apply(t, s, i, logsOf(n, n+2, true))
	}
	checkLog(t, s, 5, markerFor(17), 23, 37)
}

// The final log comes in numbered pieces, once each and in order; the
// result is taken once all are in, and the log ends as head, marker and
// exactly the runner's tail. A tail with holes is replayed: stored right
// after the marker, so readers that followed live do not see it twice.
func TestLogFinalReplayEndsWithExactTail(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 5, false))
	apply(t, s, 5, logsOf(6, 8, true))
	apply(t, s, 6, logsOf(20, 22, true))
	apply(t, s, 7, logsOf(40, 42, true))
	live := s.LogChunks(nil, "j-1", 0)
	lastLive := live[len(live)-1].Seq
	// The runner's tail is lines 39-50; it sent 40-42 live.
	replay := final(logsOf(39, 42, true), 1, true)
	rest := final(logsOf(43, 50, true), 2, false)
	fin := &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: now, FinalPieces: 2, TailLine: 39, TailByte: 38 * testLineData}
	if err := s.AppendLogs(8, rest); !errors.Is(err, ErrLogIncomplete) {
		t.Fatalf("piece 2 before piece 1: %v, want incomplete", err)
	}
	if err := s.FinishJob(9, fin); !errors.Is(err, ErrLogIncomplete) {
		t.Fatalf("result before its final log: %v, want incomplete", err)
	}
	apply(t, s, 10, replay)
	apply(t, s, 11, final(logsOf(39, 42, true), 1, true)) // sent again: ignored
	apply(t, s, 12, rest)
	if err := s.FinishJob(13, fin); err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, 5, markerFor(33), 39, 50)
	j, _ := s.JobByID(nil, "j-1")
	if j.Status != rpc.JobSucceeded || j.AttemptLog != nil || j.LogDroppedLines != 33 {
		t.Errorf("job %s, attempt log %v, %d lines dropped", j.Status, j.AttemptLog, j.LogDroppedLines)
	}
	// A reader past the live chunks sees only what is new: lines 43-50.
	var after []string
	for _, c := range s.LogChunks(nil, "j-1", lastLive) {
		for _, l := range c.Lines {
			after = append(after, strings.TrimSpace(string(l.Data)))
		}
	}
	if len(after) != 8 || after[0] != "line 43" {
		t.Errorf("a follower past the live log reads %v, want lines 43-50", after)
	}
}

// Without holes the tail is not sent again: the last lines follow the
// live ones, and the stored tail is cut to exactly the runner's.
func TestLogFinalTrimsToTheRunnersTail(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 5, false))
	for n, i := uint64(6), uint64(5); n <= 30; n, i = n+3, i+1 {
		apply(t, s, i, logsOf(n, n+2, true))
	}
	apply(t, s, 20, final(logsOf(33, 40, true), 1, false))
	if err := s.FinishJob(21, &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: now, FinalPieces: 1, TailLine: 29}); err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, 5, markerFor(23), 29, 40)
}

// A runner that does not number lines still has its lines stored in
// order, cut at the limit with a line that says so; a result's lines are
// taken too, never refused.
func TestLogUnnumberedLinesCutAtTheLimit(t *testing.T) {
	s := logFixture(t)
	unnumbered := func(from, to uint64) *pb.JobLogs {
		r := logsOf(from, to, false)
		r.FirstLine, r.FirstByte = 0, 0
		return r
	}
	apply(t, s, 4, unnumbered(1, 15))
	apply(t, s, 5, unnumbered(16, 25))
	if err := s.AppendLogs(6, unnumbered(26, 26)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("lines past a full log: %v, want refused", err)
	}
	if err := s.FinishJob(7, &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: now, Lines: unnumbered(27, 28).Lines}); err != nil {
		t.Fatalf("result with lines past the limit: %v", err)
	}
	got := storedLog(s)
	if len(got) != 21 || got[19] != "line 20" || !strings.HasPrefix(got[20], "! outpost: log truncated") {
		t.Fatalf("stored log:\n%s", strings.Join(got, "\n"))
	}
	if j, _ := s.JobByID(nil, "j-1"); !j.LogsTruncated || j.Status != rpc.JobSucceeded {
		t.Errorf("job %s, truncated %v", j.Status, j.LogsTruncated)
	}
}

// A new attempt's log starts afresh beside the old one's.
func TestLogNewAttemptStartsAfresh(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 20, false))
	if err := s.MarkLost(5, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 2}}, Reason: "gone", Time: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AssignJobs(6, &pb.AssignJobsEntry{Time: now, Assignments: []*pb.Assignment{{JobId: "j-1", RunnerId: "r-1"}}}); err != nil {
		t.Fatal(err)
	}
	r := logsOf(1, 20, false)
	r.Lease = 6
	if err := s.AppendLogs(7, r); err != nil {
		t.Fatalf("the second attempt's full head: %v", err)
	}
	if got := len(storedLog(s)); got != 40 {
		t.Errorf("%d lines stored, want both attempts' 20", got)
	}
}

// An attempt given up on (its runner went quiet, or restarted) whose
// result still comes brings its final log with it: both are taken while
// no newer attempt has started.
func TestLogFinalOfALateResult(t *testing.T) {
	s := logFixture(t)
	apply(t, s, 4, logsOf(1, 2, false))
	if err := s.MarkLost(5, &pb.MarkLostEntry{Jobs: []*pb.LostJob{{JobId: "j-1", Lease: 2}}, Reason: "runner restarted", Time: now}); err != nil {
		t.Fatal(err)
	}
	if j, _ := s.JobByID(nil, "j-1"); j.Status != rpc.JobPending || j.Attempt != 2 {
		t.Fatalf("after the loss the job is %s, attempt %d", j.Status, j.Attempt)
	}
	if err := s.AppendLogs(6, logsOf(3, 3, false)); !errors.Is(err, ErrStaleLease) {
		t.Fatalf("a live report of the lost attempt: %v, want stale", err)
	}
	fin := &pb.JobFinished{JobId: "j-1", Lease: 2, Outcome: "succeeded", Time: now, FinalPieces: 1}
	if err := s.ApplyReports(7, now, []*pb.RunnerMessage{
		{Msg: &pb.RunnerMessage_Finished{Finished: fin}},
		{Msg: &pb.RunnerMessage_Logs{Logs: logsOf(3, 3, false)}},
	}); !errors.Is(err[0], ErrLogIncomplete) || !errors.Is(err[1], ErrStaleLease) {
		t.Fatalf("the late result before its final log, then a live report: %v", err)
	}
	if j, _ := s.JobByID(nil, "j-1"); j.Status != rpc.JobPending || j.Lease != 0 {
		t.Fatalf("a refused late result changed the job: %s under lease %d", j.Status, j.Lease)
	}
	apply(t, s, 8, final(logsOf(3, 4, false), 1, false))
	if err := s.FinishJob(9, fin); err != nil {
		t.Fatalf("the late result: %v", err)
	}
	checkLog(t, s, 4, "", 0, 0)
	j, _ := s.JobByID(nil, "j-1")
	if j.Status != rpc.JobSucceeded || j.Attempt != 1 {
		t.Errorf("job %s, attempt %d; want succeeded, attempt 1", j.Status, j.Attempt)
	}
	for _, c := range s.LogChunks(nil, "j-1", 0) {
		if c.Attempt != 1 {
			t.Errorf("chunk %d is of attempt %d, want 1", c.Seq, c.Attempt)
		}
	}
}
