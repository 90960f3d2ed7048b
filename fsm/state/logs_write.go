package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/outpost-run/outpost/internal/logcap"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// How the servers keep a job's log (pb.AttemptLog has the bookkeeping).
//
// Runners number the output lines of an attempt and send its head (the
// first output, whole), then its tail, live and at a bounded rate, leaving
// out what they cannot send in time, and, once the attempt is over, its
// final log in numbered pieces ahead of the result. The servers store the
// head as it comes and the tail as a ring: a tail chunk that would take
// the attempt's log past the limit pushes the oldest tail chunks out, and
// a marker chunk between head and tail says how much output lies between
// them. Lines are positioned by number, so what is stored is never stored
// twice, and a hole is said to be one where it is.
//
// Every count is derived from the report and the state alone: each server
// stores exactly the same chunks.

// replaySeqs is how many chunk numbers right after an attempt's marker are
// kept for a tail the runner sends again once the attempt is over
// (JobLogs.replay): stored there, it reads in order after the head and
// marker, yet readers that followed the log live, and so are past those
// numbers, do not see it twice. Runners send pieces of about 64 KiB, so
// a 4 MiB tail takes about 64; what does not fit goes after the live tail.
const replaySeqs = 1 << 10

// storeLogs records a log report for attempt of j (its current one, or
// the one given up on whose result may still be taken). inResult marks
// the lines of a result from a runner that did not number lines: like a
// final piece they must be recorded, so what passes the limit is cut
// rather than refused. It reports whether j changed; the caller stores j.
// A refused report changes nothing.
func (s *Store) storeLogs(txn *memdb.Txn, index uint64, j *pb.Job, attempt uint32, r *pb.JobLogs, inResult bool) (bool, error) {
	lg := j.AttemptLog
	if lg == nil || lg.Lease != r.Lease {
		lg = &pb.AttemptLog{Lease: r.Lease, Attempt: attempt, NextLine: 1}
	}
	final := r.FinalPiece > 0
	if final {
		switch {
		case r.FinalPiece <= lg.FinalPieces:
			return false, nil // sent again; recorded already
		case r.FinalPiece > lg.FinalPieces+1:
			return false, fmt.Errorf("job %s lease %d: final log piece %d came before piece %d: %w",
				j.Id, r.Lease, r.FinalPiece, lg.FinalPieces+1, ErrLogIncomplete)
		}
	}
	// A live report past the limit is refused; a final piece, or a
	// result's lines, are cut to fit instead: the result must be taken.
	lenient := final || inResult
	legacy := r.FirstLine == 0
	tail := r.Tail || (legacy && lg.MarkerSeq != 0)
	if !tail && lg.MarkerSeq != 0 {
		if !lenient {
			return false, fmt.Errorf("job %s lease %d: head lines after the tail began: %w", j.Id, r.Lease, ErrInvalid)
		}
		tail = true
	}
	replayStart := tail && r.Replay && !lg.Replaying
	next, nextByte := lg.NextLine, lg.NextByte
	if replayStart {
		// The replayed tail takes the place of the stored one.
		next, nextByte = r.FirstLine, r.FirstByte
	}
	first, firstByte := r.FirstLine, r.FirstByte
	if legacy {
		first, firstByte = next, nextByte
	}
	lines := make([]*pb.LogLine, 0, len(r.Lines))
	for _, l := range r.Lines {
		lines = append(lines, asBytes(l))
	}
	// Lines stored already (a report sent again) are not stored twice.
	for first < next && len(lines) > 0 {
		firstByte += uint64(len(lines[0].Data))
		first++
		lines = lines[1:]
	}
	// A hole before the lines is said where it is, unless the marker
	// says it: before the first tail lines it lies between head and tail.
	var note *pb.LogLine
	if len(lines) > 0 && first > next && !(tail && (lg.MarkerSeq == 0 || replayStart)) {
		note = &pb.LogLine{Time: lines[0].Time, Stream: "system",
			Data: skipNote(first-next, sub(firstByte, nextByte), r.SkipCause, r.RateBytes)}
	}
	size := uint64(logcap.Size(lines))
	if note != nil {
		size += uint64(logcap.LineSize(note))
	}
	truncated := false
	if tail {
		room := sub(s.maxLogBytes, lg.HeadBytes)
		if size > room {
			if !lenient {
				return false, fmt.Errorf("job %s lease %d: %d bytes of tail lines do not fit the %d the attempt's log has room for beside its head: %w",
					j.Id, r.Lease, size, room, ErrInvalid)
			}
			// Keep the newest lines that fit.
			note = nil
			for len(lines) > 0 && size > room {
				size -= uint64(logcap.LineSize(lines[0]))
				firstByte += uint64(len(lines[0].Data))
				first++
				lines = lines[1:]
			}
		}
	} else {
		room := sub(s.maxLogBytes, lg.HeadBytes)
		if size > room {
			if !lenient && !(legacy && room > 0) {
				return false, fmt.Errorf("job %s lease %d: %d bytes of head lines would take the attempt's log past its limit of %d bytes: %w",
					j.Id, r.Lease, size, s.maxLogBytes, ErrInvalid)
			}
			// Keep the oldest lines that fit; a line says the rest is cut.
			keep, kept := 0, uint64(0)
			if note != nil {
				kept = uint64(logcap.LineSize(note))
			}
			for keep < len(lines) && kept+uint64(logcap.LineSize(lines[keep])) <= room {
				kept += uint64(logcap.LineSize(lines[keep]))
				keep++
			}
			truncated = room > 0
			lines, size = lines[:keep], kept
		}
	}

	if len(lines) == 0 && !truncated && !final {
		return false, nil
	}
	if j.AttemptLog != lg {
		// A new attempt's log: what the previous one dropped is history.
		j.AttemptLog = lg
		j.LogDroppedLines, j.LogDroppedBytes = 0, 0
	}
	if final {
		lg.FinalPieces = r.FinalPiece
	}
	if len(lines) == 0 && !truncated {
		return true, nil
	}
	if tail && lg.MarkerSeq == 0 {
		// The head is over: the marker's number and the replay range
		// come next, then the live tail.
		lg.HeadEndLine, lg.HeadEndByte = lg.NextLine, lg.NextByte
		lg.MarkerSeq = j.LogChunks + 1
		lg.ReplaySeq = lg.MarkerSeq
		j.LogChunks = lg.MarkerSeq + replaySeqs
	}
	if replayStart {
		if err := s.dropTail(txn, j, lg); err != nil {
			return false, err
		}
		lg.Replaying = true
		lg.ReplaySeq = lg.MarkerSeq
	}
	var seq uint64
	if tail && r.Replay && lg.ReplaySeq < lg.MarkerSeq+replaySeqs {
		lg.ReplaySeq++
		seq = lg.ReplaySeq
	} else {
		j.LogChunks++
		seq = j.LogChunks
	}
	numbered, output := len(lines), uint64(0)
	for _, l := range lines {
		output += uint64(len(l.Data))
	}
	stored := lines
	if note != nil {
		stored = append([]*pb.LogLine{note}, lines...)
	}
	if truncated {
		at := r.Lines[len(r.Lines)-1].GetTime()
		stored = append(stored, &pb.LogLine{Time: at, Stream: "system",
			Data: fmt.Appendf(nil, "outpost: log truncated: this attempt's log reached its limit of %d bytes; later lines are dropped", s.maxLogBytes)})
		j.LogsTruncated = true
	}
	c := &pb.LogChunk{JobId: j.Id, Seq: seq, Attempt: lg.Attempt, Lines: stored,
		FirstLine: first, FirstByte: firstByte, SkipNote: note != nil}
	if err := txn.Insert(TableJobLogs, c); err != nil {
		return false, fmt.Errorf("state: insert log chunk: %w", err)
	}
	if err := setIndex(txn, TableJobLogs, index); err != nil {
		return false, err
	}
	j.LogBytes += output
	lg.NextLine, lg.NextByte = first+uint64(numbered), firstByte+output
	if !tail {
		lg.HeadBytes += size
		if truncated {
			lg.HeadBytes = s.maxLogBytes // full: later head lines are refused
		}
		return true, nil
	}
	lg.TailBytes += size
	return true, s.keepTail(txn, j, lg)
}

// keepTail drops the oldest tail chunks until the attempt's log is within
// its limit, and updates the marker.
func (s *Store) keepTail(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog) error {
	room := sub(s.maxLogBytes, lg.HeadBytes)
	for lg.TailBytes > room {
		c, err := oldestTail(txn, j.Id, lg)
		if err != nil || c == nil {
			return err
		}
		if err := s.deleteChunk(txn, j, lg, c); err != nil {
			return err
		}
	}
	return s.refreshMarker(txn, j, lg)
}

// trimTail drops the stored tail lines numbered below line, so the tail
// is exactly the runner's final tail, and updates the marker.
func (s *Store) trimTail(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog, line uint64) error {
	for {
		c, err := oldestTail(txn, j.Id, lg)
		if err != nil || c == nil {
			return err
		}
		out := outputLines(c)
		switch {
		case c.FirstLine+uint64(len(out)) <= line:
			if err := s.deleteChunk(txn, j, lg, c); err != nil {
				return err
			}
			continue
		case c.FirstLine < line:
			cut := out[:line-c.FirstLine]
			if err := s.replaceChunk(txn, j, lg, c, out[len(cut):], c.FirstLine+uint64(len(cut)), c.FirstByte+dataBytes(cut)); err != nil {
				return err
			}
		}
		return s.refreshMarker(txn, j, lg)
	}
}

// dropTail removes every tail chunk of the attempt.
func (s *Store) dropTail(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog) error {
	chunks, err := tableChunks(txn, nil, j.Id, lg.MarkerSeq)
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if err := s.deleteChunk(txn, j, lg, c); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) deleteChunk(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog, c *pb.LogChunk) error {
	if err := txn.Delete(TableJobLogs, c); err != nil {
		return fmt.Errorf("state: drop log chunk %d of %s: %w", c.Seq, j.Id, err)
	}
	lg.TailBytes = sub(lg.TailBytes, uint64(logcap.Size(c.Lines)))
	j.LogBytes = sub(j.LogBytes, dataBytes(outputLines(c)))
	return nil
}

// replaceChunk stores c again holding just lines (output lines of c,
// without its note), which start at line number first, after firstByte
// bytes of output.
func (s *Store) replaceChunk(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog, c *pb.LogChunk, lines []*pb.LogLine, first, firstByte uint64) error {
	was := uint64(logcap.Size(c.Lines))
	d := &pb.LogChunk{JobId: c.JobId, Seq: c.Seq, Attempt: c.Attempt, Lines: lines, FirstLine: first, FirstByte: firstByte}
	if err := txn.Insert(TableJobLogs, d); err != nil {
		return fmt.Errorf("state: rewrite log chunk %d of %s: %w", c.Seq, j.Id, err)
	}
	lg.TailBytes = sub(lg.TailBytes, was) + uint64(logcap.Size(lines))
	j.LogBytes = sub(j.LogBytes, dataBytes(outputLines(c))) + dataBytes(lines)
	return nil
}

// refreshMarker makes the marker chunk say how much output lies between
// the head and the oldest stored tail line, or removes it when nothing
// does. The oldest tail chunk's own note, if it has one, tells part of the
// same: it is dropped, so the log says it once.
func (s *Store) refreshMarker(txn *memdb.Txn, j *pb.Job, lg *pb.AttemptLog) error {
	c, err := oldestTail(txn, j.Id, lg)
	if err != nil {
		return err
	}
	if c != nil && c.SkipNote {
		if err := s.replaceChunk(txn, j, lg, c, outputLines(c), c.FirstLine, c.FirstByte); err != nil {
			return err
		}
		c = &pb.LogChunk{FirstLine: c.FirstLine, FirstByte: c.FirstByte, Lines: outputLines(c)}
	}
	var lines, bytes uint64
	if c != nil && c.FirstLine > lg.HeadEndLine && len(c.Lines) > 0 {
		lines, bytes = c.FirstLine-lg.HeadEndLine, sub(c.FirstByte, lg.HeadEndByte)
	}
	j.LogDroppedLines, j.LogDroppedBytes = lines, bytes
	old, err := txn.First(TableJobLogs, "id", j.Id, lg.MarkerSeq)
	if err != nil {
		return fmt.Errorf("state: read log marker of %s: %w", j.Id, err)
	}
	if lines == 0 {
		if old != nil {
			if err := txn.Delete(TableJobLogs, old); err != nil {
				return fmt.Errorf("state: drop log marker of %s: %w", j.Id, err)
			}
		}
		return nil
	}
	j.LogsTruncated = true
	m := &pb.LogChunk{JobId: j.Id, Seq: lg.MarkerSeq, Attempt: lg.Attempt, Lines: []*pb.LogLine{{
		Time: c.Lines[0].Time, Stream: "system", Data: markerText(lines, bytes, s.maxLogBytes),
	}}}
	if err := txn.Insert(TableJobLogs, m); err != nil {
		return fmt.Errorf("state: write log marker of %s: %w", j.Id, err)
	}
	return nil
}

// oldestTail returns the attempt's oldest stored tail chunk: every chunk
// after the marker's number is one.
func oldestTail(txn *memdb.Txn, jobID string, lg *pb.AttemptLog) (*pb.LogChunk, error) {
	if lg.MarkerSeq == 0 {
		return nil, nil
	}
	it, err := txn.LowerBound(TableJobLogs, "id", jobID, lg.MarkerSeq+1)
	if err != nil {
		return nil, fmt.Errorf("state: read logs of %s: %w", jobID, err)
	}
	if raw := it.Next(); raw != nil {
		if c := raw.(*pb.LogChunk); c.JobId == jobID {
			return c, nil
		}
	}
	return nil, nil
}

// outputLines are a chunk's lines of output, without outpost's note.
func outputLines(c *pb.LogChunk) []*pb.LogLine {
	if c.SkipNote && len(c.Lines) > 0 {
		return c.Lines[1:]
	}
	return c.Lines
}

func dataBytes(lines []*pb.LogLine) uint64 {
	var n uint64
	for _, l := range lines {
		n += uint64(len(l.Data))
	}
	return n
}

// sub is a - b, or 0 when b is larger.
func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func markerText(lines, bytes, limit uint64) []byte {
	return fmt.Appendf(nil, "outpost: %d lines (%d bytes) of output left out here: the log of an attempt keeps its first and its last output, at most %d bytes", lines, bytes, limit)
}

// skipNote says why the lines before a chunk are not in the log, with
// the cause the runner gave.
func skipNote(lines, bytes uint64, cause string, rate uint64) []byte {
	switch cause {
	case "rate":
		return fmt.Appendf(nil, "outpost: %d lines (%d bytes) not sent live: this job printed faster than its runner sends logs (%d bytes/s); the end of its output is kept whole", lines, bytes, rate)
	case "unreachable":
		return fmt.Appendf(nil, "outpost: %d lines (%d bytes) not sent live: no server was reachable; the end of its output is kept whole", lines, bytes)
	}
	return fmt.Appendf(nil, "outpost: %d lines (%d bytes) missing here: they did not reach the servers", lines, bytes)
}
