package runner

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/internal/logcap"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// LogLimits bound what one attempt's output costs, before anything leaves
// the runner: its log is the first HeadBytes of output and the last
// TailBytes, with one marker line between them saying what was left out,
// and the runner sends it at RateBytes per second on average. Sizes count
// as the servers count them (logcap.LineSize: a line's bytes, its step
// and stream names, and 32).
type LogLimits struct {
	// HeadBytes of the first output are kept and sent whole.
	HeadBytes int
	// TailBytes of the last output are kept whole: sent live as far as
	// the rate allows, and whole once the attempt is over.
	TailBytes int
	// RateBytes is what the runner sends of one job's output per second,
	// on average (in bursts of up to a second's worth, at least 128 KiB,
	// and the head once as it comes), so that a chatty job cannot crowd
	// out other jobs' reports, or the runner's heartbeats, on the stream
	// and in the servers' log.
	RateBytes int
}

// Default log limits: a 4 MiB log per attempt, the most the servers keep
// (logcap.MaxBytes), and about 1,600 lines of 80 characters a second.
const (
	DefaultLogHead = 1 << 20
	DefaultLogTail = 3 << 20
	DefaultLogRate = 128 << 10

	// MinLogTail holds two of the longest lines (executor.MaxLineBytes).
	MinLogTail = 2 * (executor.MaxLineBytes + 1<<10)
	// MinLogRate sends the longest line within a few seconds.
	MinLogRate = 16 << 10
)

// DefaultLogLimits returns the defaults.
func DefaultLogLimits() LogLimits {
	return LogLimits{HeadBytes: DefaultLogHead, TailBytes: DefaultLogTail, RateBytes: DefaultLogRate}
}

// Validate checks the limits fit the servers' per-attempt limit.
func (l LogLimits) Validate() error {
	switch {
	case l.HeadBytes < 0:
		return fmt.Errorf("log head: %d bytes is negative", l.HeadBytes)
	case l.TailBytes < MinLogTail:
		return fmt.Errorf("log tail: %d bytes is under the %d that hold two of the longest lines", l.TailBytes, MinLogTail)
	case l.HeadBytes+l.TailBytes > logcap.MaxBytes:
		return fmt.Errorf("log head and tail: %d + %d bytes is over the %d bytes the servers keep of an attempt's log", l.HeadBytes, l.TailBytes, logcap.MaxBytes)
	case l.RateBytes < MinLogRate:
		return fmt.Errorf("log rate: %d bytes per second is under the minimum of %d", l.RateBytes, MinLogRate)
	}
	return nil
}

// logPieceBytes is about the most one log report carries (it may pass it
// by one line): a quarter of the report a server takes, so that reports
// batch into log entries well below Raft's suggested entry size.
const logPieceBytes = 64 << 10

// outLine is one output line as the runner holds it: smaller than a
// pb.LogLine, which it becomes only when sent.
type outLine struct {
	at     int64 // unix nanoseconds
	stream string
	step   string
	text   string
}

func (l *outLine) size() int {
	return len(l.text) + len(l.step) + len(l.stream) + logcap.LineOverhead
}

func (l *outLine) wire() *pb.LogLine {
	// Bytes, not a string: a step may print anything, and a proto string
	// holding invalid UTF-8 cannot be encoded.
	return &pb.LogLine{Time: timestamppb.New(time.Unix(0, l.at)), Stream: l.stream, Step: l.step, Data: []byte(l.text)}
}

// jobLog shapes one attempt's output into its log. Lines are numbered from
// 1 in output order; reports say where their lines sit, so the servers
// store each line once and can say how much lies in each hole. It holds at
// most the head (until sent) and the tail ring, so a job that prints
// without end costs the runner HeadBytes + TailBytes of lines.
type jobLog struct {
	lim   LogLimits
	burst float64

	mu sync.Mutex
	// lines and bytes of output so far.
	lines, bytes uint64

	// The head: headFull once a line did not fit. head holds the lines
	// not sent yet, the first numbered headLine after headByte bytes.
	headFull bool
	headSize int
	head     []outLine
	headLine uint64
	headByte uint64
	// unacked are head lines sent live that no server has said it
	// stored, the first numbered unackedLine after unackedByte bytes: a
	// server that dies between taking a report and committing it loses
	// them, so the final log sends them again (servers store a line once).
	unacked     []outLine
	unackedLine uint64
	unackedByte uint64

	// The tail ring: the newest lines after the head, at most TailBytes,
	// in ring[ringOff:]; the first numbered ringLine after ringByte bytes.
	ring     []outLine
	ringOff  int
	ringSize int
	ringLine uint64
	ringByte uint64

	// The live cursor: tail lines numbered below sent were sent or left
	// out; unsent is the size of the ring's lines from sent on. cause
	// says why lines were left out since the last send ("" if none),
	// and gapAt is the line after the latest left out (0 if none).
	sent     uint64
	sentByte uint64
	unsent   int
	cause    string
	gapAt    uint64
	offline  bool // the latest send failed: no server is reachable

	tokens   float64
	refilled time.Time
}

// newJobLog starts with a burst plus the head in hand: the head goes as it
// comes, once (it is bounded), so the live log of a chatty job shows its
// start at once rather than a second of it per second; the rest goes at
// the rate.
func newJobLog(lim LogLimits) *jobLog {
	burst := float64(max(lim.RateBytes, 2*logPieceBytes))
	return &jobLog{lim: lim, burst: burst, tokens: burst + float64(lim.HeadBytes)}
}

// add takes one output line. It reports whether enough waits to be sent
// that the sender should not wait for its next tick.
func (jl *jobLog) add(l executor.LogLine) bool {
	ol := outLine{at: l.Time.UnixNano(), stream: string(l.Stream), step: l.Step, text: l.Text}
	size := ol.size()
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jl.lines++
	n, at := jl.lines, jl.bytes
	jl.bytes += uint64(len(ol.text))
	if !jl.headFull && jl.headSize+size <= jl.lim.HeadBytes {
		if len(jl.head) == 0 {
			jl.headLine, jl.headByte = n, at
		}
		jl.head = append(jl.head, ol)
		jl.headSize += size
		return len(jl.head) == 1
	}
	if !jl.headFull {
		jl.headFull = true
		jl.ringLine, jl.ringByte = n, at
		jl.sent, jl.sentByte = n, at
	}
	jl.ring = append(jl.ring, ol)
	jl.ringSize += size
	jl.unsent += size
	for jl.ringSize > jl.lim.TailBytes && len(jl.ring)-jl.ringOff > 1 {
		old := &jl.ring[jl.ringOff]
		osize := old.size()
		if jl.ringLine >= jl.sent {
			// Never sent: not reachable, or not sending fast enough.
			jl.unsent -= osize
			jl.sent, jl.sentByte = jl.ringLine+1, jl.ringByte+uint64(len(old.text))
			jl.leftOut()
		}
		jl.ringSize -= osize
		jl.ringLine++
		jl.ringByte += uint64(len(old.text))
		*old = outLine{}
		jl.ringOff++
	}
	if jl.ringOff > 1024 && jl.ringOff > len(jl.ring)/2 {
		jl.ring = append(jl.ring[:0:0], jl.ring[jl.ringOff:]...)
		jl.ringOff = 0
	}
	return jl.unsent >= logPieceBytes
}

// leftOut notes that live lines up to sent were left out.
func (jl *jobLog) leftOut() {
	jl.gapAt = jl.sent
	switch {
	case jl.offline:
		jl.cause = "unreachable"
	case jl.cause == "":
		jl.cause = "rate"
	}
}

// liveSend is one report of live lines, sent once done is called.
type liveSend struct {
	rep              *pb.JobLogs
	cost             int
	tail             bool
	headLines        int
	endLine, endByte uint64
}

// nextLive returns the next report of live lines within the rate, or nil
// when none is due: the head first, whole, then the tail, from where the
// last send stopped. When more of the tail waits than a burst can send,
// its oldest lines are left out, so the live log lags the job by about a
// second at most; they come back in the final log if they are in the tail.
func (jl *jobLog) nextLive(now time.Time) *liveSend {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	if !jl.refilled.IsZero() && jl.tokens < jl.burst {
		jl.tokens = min(jl.burst, jl.tokens+now.Sub(jl.refilled).Seconds()*float64(jl.lim.RateBytes))
	}
	jl.refilled = now
	budget := min(int(jl.tokens), logPieceBytes)
	if len(jl.head) > 0 {
		n, size := take(jl.head, budget)
		if n == 0 {
			return nil
		}
		s := &liveSend{rep: &pb.JobLogs{FirstLine: jl.headLine, FirstByte: jl.headByte}, cost: size, headLines: n}
		for i := range n {
			s.rep.Lines = append(s.rep.Lines, jl.head[i].wire())
		}
		return s
	}
	if !jl.headFull {
		return nil
	}
	if jl.unsent > int(jl.burst) {
		for i := jl.ringOff + int(jl.sent-jl.ringLine); jl.unsent > int(jl.burst) && i < len(jl.ring); i++ {
			jl.unsent -= jl.ring[i].size()
			jl.sent++
			jl.sentByte += uint64(len(jl.ring[i].text))
		}
		jl.leftOut()
	}
	from := jl.ringOff + int(jl.sent-jl.ringLine)
	n, size := take(jl.ring[from:], budget)
	if n == 0 {
		return nil
	}
	s := &liveSend{rep: &pb.JobLogs{FirstLine: jl.sent, FirstByte: jl.sentByte, Tail: true, SkipCause: jl.cause}, cost: size, tail: true}
	if jl.cause == "rate" {
		s.rep.RateBytes = uint64(jl.lim.RateBytes)
	}
	s.endLine, s.endByte = jl.sent, jl.sentByte
	for _, l := range jl.ring[from : from+n] {
		s.rep.Lines = append(s.rep.Lines, l.wire())
		s.endLine++
		s.endByte += uint64(len(l.text))
	}
	return s
}

// take counts the leading lines that fit in budget: none if the first
// does not.
func take(lines []outLine, budget int) (int, int) {
	n, size := 0, 0
	for n < len(lines) && size+lines[n].size() <= budget {
		size += lines[n].size()
		n++
	}
	return n, size
}

// sentLive records that s was sent.
func (jl *jobLog) sentLive(s *liveSend) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	jl.tokens -= float64(s.cost)
	jl.offline = false
	if !s.tail {
		if len(jl.unacked) == 0 {
			jl.unackedLine, jl.unackedByte = jl.headLine, jl.headByte
		}
		jl.unacked = append(jl.unacked, jl.head[:s.headLines]...)
		for i := range s.headLines {
			jl.head[i] = outLine{}
		}
		jl.head = jl.head[s.headLines:]
		jl.headLine += uint64(s.headLines)
		for _, l := range s.rep.Lines {
			jl.headByte += uint64(len(l.Data))
		}
		return
	}
	jl.cause = ""
	// Lines may have left the ring since: count off those still in it.
	for i := jl.ringOff + int(max(jl.sent, jl.ringLine)-jl.ringLine); i < len(jl.ring) && jl.ringLine+uint64(i-jl.ringOff) < s.endLine; i++ {
		jl.unsent -= jl.ring[i].size()
	}
	if s.endLine > jl.sent {
		jl.sent, jl.sentByte = s.endLine, s.endByte
	}
}

// stored records that a server committed the attempt's lines from first
// to before next. When no older line waits for its acknowledgement, the
// lines before next need not be sent again. When one does (its report
// went to a server that died, and this one to the next server), all are
// kept: the final log sends them again and servers store each line once.
func (jl *jobLog) stored(first, next uint64) {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	if first > jl.unackedLine {
		return
	}
	for len(jl.unacked) > 0 && jl.unackedLine < next {
		jl.unackedByte += uint64(len(jl.unacked[0].text))
		jl.unacked[0] = outLine{}
		jl.unacked = jl.unacked[1:]
		jl.unackedLine++
	}
	if len(jl.unacked) == 0 {
		jl.unacked = nil
	}
}

// sendFailed records that no server took the latest send.
func (jl *jobLog) sendFailed() {
	jl.mu.Lock()
	jl.offline = true
	jl.mu.Unlock()
}

// finalLog is what an attempt's log still needs once it is over.
type finalLog struct {
	pieces []*pb.JobLogs
	// tailLine and tailByte place the first line of the final tail; 0
	// when there is no tail.
	tailLine, tailByte uint64
}

// final returns the attempt's final log: the head lines not sent, then
// the tail the servers lack. When lines of the tail were left out of the
// live log, the whole tail goes again (replay), to replace what the
// servers hold; else just the lines not sent yet. The job log is empty
// afterwards. Pieces are numbered and carry jobID and lease.
func (jl *jobLog) final(jobID string, lease uint64) finalLog {
	jl.mu.Lock()
	defer jl.mu.Unlock()
	var out finalLog
	add := func(lines []outLine, line, at uint64, tail, replay bool, cause string) {
		for len(lines) > 0 {
			n, _ := take(lines, logPieceBytes)
			n = max(n, 1)
			p := &pb.JobLogs{JobId: jobID, Lease: lease, FirstLine: line, FirstByte: at, Tail: tail, Replay: replay,
				FinalPiece: uint32(len(out.pieces) + 1), SkipCause: cause}
			if cause == "rate" {
				p.RateBytes = uint64(jl.lim.RateBytes)
			}
			cause = ""
			for _, l := range lines[:n] {
				p.Lines = append(p.Lines, l.wire())
				line++
				at += uint64(len(l.text))
			}
			out.pieces = append(out.pieces, p)
			lines = lines[n:]
		}
	}
	// Unacknowledged head lines come first: they and the unsent head are
	// one run of lines.
	head, line, at := jl.head, jl.headLine, jl.headByte
	if len(jl.unacked) > 0 {
		head, line, at = append(jl.unacked, jl.head...), jl.unackedLine, jl.unackedByte
	}
	add(head, line, at, false, false, "")
	ring := jl.ring[jl.ringOff:]
	if jl.headFull && len(ring) > 0 {
		out.tailLine, out.tailByte = jl.ringLine, jl.ringByte
		unsent := ring[jl.sent-jl.ringLine:]
		if jl.gapAt > jl.ringLine {
			// A hole inside the tail: send it all again.
			add(ring[:len(ring)-len(unsent)], jl.ringLine, jl.ringByte, true, true, "")
			add(unsent, jl.sent, jl.sentByte, true, false, "")
		} else {
			add(unsent, jl.sent, jl.sentByte, true, false, jl.cause)
		}
	}
	jl.head, jl.unacked, jl.ring, jl.ringOff = nil, nil, nil, 0
	return out
}
