package runner

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/logcap"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

var testLimits = LogLimits{HeadBytes: 64 << 10, TailBytes: 192 << 10, RateBytes: 64 << 10}

func line(i int) executor.LogLine {
	return executor.LogLine{Time: time.Unix(1700000000, int64(i)), Stream: executor.Stdout, Step: "s", Text: fmt.Sprintf("line %07d %s", i, strings.Repeat("x", 80))}
}

// sink is what the servers would keep of a log from the reports it got:
// line text by number, as positions say.
type sink struct {
	t     *testing.T
	lines map[uint64]string
	bytes map[uint64]uint64
}

func newSink(t *testing.T) *sink {
	return &sink{t: t, lines: map[uint64]string{}, bytes: map[uint64]uint64{}}
}

func (s *sink) take(r *pb.JobLogs) {
	n, at := r.FirstLine, r.FirstByte
	for _, l := range r.Lines {
		s.lines[n] = string(l.Data)
		s.bytes[n] = at
		n++
		at += uint64(len(l.Data))
	}
}

// drain sends what is due live at now, as a connected runner would.
func drain(jl *jobLog, now time.Time, s *sink) (reports int) {
	for {
		ls := jl.nextLive(now)
		if ls == nil {
			return reports
		}
		s.take(ls.rep)
		jl.sentLive(ls)
		// The server stored it and says so.
		jl.stored(ls.rep.FirstLine, ls.rep.FirstLine+uint64(len(ls.rep.Lines)))
		reports++
	}
}

// A server that took head lines and died before storing them never
// acknowledges them: the final log sends them again, and only them and
// what was never sent.
func TestJobLogUnacknowledgedHeadComesAgain(t *testing.T) {
	jl := newJobLog(testLimits)
	now := time.Now()
	for i := range 10 {
		jl.add(line(i))
	}
	first := jl.nextLive(now)
	jl.sentLive(first) // taken by a server that then died: no acknowledgement
	for i := 10; i < 15; i++ {
		jl.add(line(i))
	}
	second := jl.nextLive(now)
	jl.sentLive(second)
	// The second report went to the next server, which stored it: the
	// first report's lines are still unacknowledged, so all are kept.
	jl.stored(second.rep.FirstLine, second.rep.FirstLine+uint64(len(second.rep.Lines)))
	for i := 15; i < 20; i++ {
		jl.add(line(i))
	}
	fin := jl.final("j-1", 7)
	s := newSink(t)
	for _, p := range fin.pieces {
		s.take(p)
	}
	if len(fin.pieces) == 0 || fin.pieces[0].FirstLine != 1 {
		t.Fatalf("final log %v, want it to start at line 1: lines 1-10 were never acknowledged", fin.pieces)
	}
	for i := range 20 {
		if s.lines[uint64(i+1)] != line(i).Text {
			t.Errorf("line %d: final log has %q, want %q", i+1, s.lines[uint64(i+1)], line(i).Text)
		}
	}

	// Without any acknowledgement every head line comes again.
	jl = newJobLog(testLimits)
	for i := range 10 {
		jl.add(line(i))
	}
	jl.sentLive(jl.nextLive(now))
	fin = jl.final("j-2", 7)
	s = newSink(t)
	for _, p := range fin.pieces {
		s.take(p)
	}
	for i := range 10 {
		if s.lines[uint64(i+1)] != line(i).Text {
			t.Errorf("line %d: final log has %q, want %q", i+1, s.lines[uint64(i+1)], line(i).Text)
		}
	}
}

// A job that prints little sends all of it live, in order, and its final
// log holds nothing the servers already have.
func TestJobLogQuietJobIsSentWhole(t *testing.T) {
	jl := newJobLog(testLimits)
	s := newSink(t)
	now := time.Now()
	for i := range 3000 {
		jl.add(line(i))
		if i%50 == 0 {
			now = now.Add(time.Second)
			drain(jl, now, s)
		}
	}
	drain(jl, now.Add(time.Minute), s)
	fin := jl.final("j-1", 7)
	for _, p := range fin.pieces {
		if !p.Tail {
			t.Errorf("final piece %d sends head lines %d.. again, though every one was acknowledged", p.FinalPiece, p.FirstLine)
		}
		s.take(p)
		if p.Replay {
			t.Errorf("final piece %d replays the tail of a log that left nothing out", p.FinalPiece)
		}
	}
	for i := range 3000 {
		if s.lines[uint64(i+1)] != line(i).Text {
			t.Fatalf("line %d: got %q", i+1, s.lines[uint64(i+1)])
		}
	}
	if fin.tailLine == 0 {
		t.Errorf("no tail position, though the output passed the head")
	}
}

// A job that prints much faster than the rate: the head is whole, the live
// tail leaves lines out (and says why), memory stays within head and tail,
// and the final log replays exactly the last TailBytes of output.
func TestJobLogChattyJobKeepsHeadAndTail(t *testing.T) {
	// Ended well after its last send, none of the final tail was sent
	// live, and it goes as new lines; ended right after a send, the tail
	// has parts sent and holes, and goes again whole.
	for _, sendAtEnd := range []bool{false, true} {
		t.Run(fmt.Sprint("send at end ", sendAtEnd), func(t *testing.T) { testChatty(t, sendAtEnd) })
	}
}

func testChatty(t *testing.T, sendAtEnd bool) {
	const every = 2000
	jl := newJobLog(testLimits)
	s := newSink(t)
	now := time.Now()
	const total = 200000
	skipped := false
	for i := range total {
		jl.add(line(i))
		if i%every == 0 {
			now = now.Add(100 * time.Millisecond)
			for {
				ls := jl.nextLive(now)
				if ls == nil {
					break
				}
				if ls.rep.SkipCause == "rate" && ls.rep.RateBytes == uint64(testLimits.RateBytes) {
					skipped = true
				}
				if n := logcap.Size(ls.rep.Lines); n > logPieceBytes {
					t.Fatalf("live report of %d bytes, over %d", n, logPieceBytes)
				}
				s.take(ls.rep)
				jl.sentLive(ls)
			}
		}
		jl.mu.Lock()
		if jl.ringSize > testLimits.TailBytes || jl.headSize > testLimits.HeadBytes {
			t.Fatalf("after %d lines the runner holds a %d byte tail and %d byte head", i, jl.ringSize, jl.headSize)
		}
		jl.mu.Unlock()
	}
	if !skipped {
		t.Errorf("no live report said lines were left out for the rate")
	}
	if sendAtEnd {
		drain(jl, now.Add(100*time.Millisecond), s)
	}
	fin := jl.final("j-1", 7)
	replayed := false
	for i, p := range fin.pieces {
		if p.FinalPiece != uint32(i+1) || p.JobId != "j-1" || p.Lease != 7 {
			t.Fatalf("piece %d: numbered %d for %s/%d", i, p.FinalPiece, p.JobId, p.Lease)
		}
		replayed = replayed || p.Replay
		if n := proto.Size(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Logs{Logs: p}}); n > 2*logPieceBytes {
			t.Errorf("final piece %d is %d bytes encoded", i+1, n)
		}
	}
	if replayed != sendAtEnd {
		t.Errorf("final log replays the tail: %v", replayed)
	}
	// The final tail: from tailLine to the last line, contiguous, and the
	// last TailBytes of output.
	final := newSink(t)
	for _, p := range fin.pieces {
		final.take(p)
	}
	size := 0
	for n := fin.tailLine; n <= total; n++ {
		text, ok := final.lines[n]
		if !ok || text != line(int(n-1)).Text {
			t.Fatalf("final tail line %d: %q, want %q", n, text, line(int(n-1)).Text)
		}
		size += len(text) + len("stdout") + len("s") + logcap.LineOverhead
	}
	if size > testLimits.TailBytes || size < testLimits.TailBytes-200 {
		t.Errorf("final tail is %d bytes, want just under %d", size, testLimits.TailBytes)
	}
	if want := uint64((fin.tailLine - 1) * uint64(len(line(0).Text))); final.bytes[fin.tailLine] != want || fin.tailByte != want {
		t.Errorf("tail starts after %d (piece says %d) bytes of output, want %d", fin.tailByte, final.bytes[fin.tailLine], want)
	}
	// The head was sent whole, live: as many lines as fit in it.
	head := testLimits.HeadBytes / (len(line(0).Text) + len("stdout") + len("s") + logcap.LineOverhead)
	for n := uint64(1); n <= uint64(head); n++ {
		if s.lines[n] != line(int(n-1)).Text {
			t.Fatalf("head line %d: %q", n, s.lines[n])
		}
	}
}

// While no server is reachable, the head waits whole, the tail keeps the
// newest lines, and what is left out is said to be for want of a server.
func TestJobLogOfflineSaysUnreachable(t *testing.T) {
	jl := newJobLog(testLimits)
	now := time.Now()
	jl.sendFailed()
	for i := range 20000 {
		jl.add(line(i))
	}
	ls := jl.nextLive(now)
	if ls == nil || ls.tail || ls.rep.FirstLine != 1 {
		t.Fatalf("first live report after reconnecting: %+v, want the head from line 1", ls)
	}
	jl.sentLive(ls)
	for ls = jl.nextLive(now.Add(time.Minute)); ls != nil && !ls.tail; ls = jl.nextLive(now.Add(time.Minute)) {
		jl.sentLive(ls)
	}
	if ls == nil || ls.rep.SkipCause != "unreachable" {
		t.Fatalf("first tail report: %+v, want lines left out for want of a server", ls)
	}
}

// Limits are checked against what the servers keep.
func TestLogLimitsValidate(t *testing.T) {
	if err := DefaultLogLimits().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, l := range []LogLimits{
		{HeadBytes: 2 << 20, TailBytes: 3 << 20, RateBytes: DefaultLogRate},
		{HeadBytes: 0, TailBytes: 1 << 10, RateBytes: DefaultLogRate},
		{HeadBytes: 1 << 20, TailBytes: 1 << 20, RateBytes: 10},
		{HeadBytes: -1, TailBytes: 1 << 20, RateBytes: DefaultLogRate},
	} {
		if l.Validate() == nil {
			t.Errorf("%+v: accepted", l)
		}
	}
}

// A result goes as its final log's pieces, then itself without them.
func TestSendResultSendsPiecesFirst(t *testing.T) {
	fin := &pb.JobFinished{JobId: "j-1", Lease: 3, Outcome: "succeeded", FinalPieces: 2,
		FinalLog: []*pb.JobLogs{{JobId: "j-1", Lease: 3, FinalPiece: 1}, {JobId: "j-1", Lease: 3, FinalPiece: 2}}}
	var kinds []string
	err := sendResult(func(m *pb.RunnerMessage) error {
		switch r := m.Msg.(type) {
		case *pb.RunnerMessage_Logs:
			kinds = append(kinds, fmt.Sprintf("logs %d", r.Logs.FinalPiece))
		case *pb.RunnerMessage_Finished:
			kinds = append(kinds, fmt.Sprintf("finished %d in it", len(r.Finished.FinalLog)))
		}
		return nil
	}, newLogWindow(), fin)
	if err != nil || strings.Join(kinds, ", ") != "logs 1, logs 2, finished 0 in it" {
		t.Fatalf("sent %v (%v)", kinds, err)
	}
	if len(fin.FinalLog) != 2 {
		t.Errorf("the result lost its final log, which the outbox keeps")
	}
}

// At most logWindowBytes of final pieces go unanswered; an answer makes
// room, and the end of the stream ends the wait.
func TestLogWindowBoundsPiecesInFlight(t *testing.T) {
	w := newLogWindow()
	a, b := pieceKey{"j-1", 1, 1}, pieceKey{"j-1", 1, 2}
	if err := w.take(a, logWindowBytes-10); err != nil {
		t.Fatal(err)
	}
	took := make(chan error, 1)
	go func() { took <- w.take(b, 100) }()
	select {
	case err := <-took:
		t.Fatalf("a piece went past a full window: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	w.answered(a)
	if err := <-took; err != nil {
		t.Fatal(err)
	}
	w.answered(b)
	if err := w.take(a, logWindowBytes); err != nil {
		t.Fatal(err)
	}
	go func() { took <- w.take(b, 100) }()
	w.close()
	if err := <-took; err == nil {
		t.Fatal("a wait for room outlived its stream")
	}
}
