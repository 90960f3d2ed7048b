package rpc

import (
	"strings"
	"unicode/utf8"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// LineBytes returns a log line's bytes as the step printed them, from an
// answer of any server: data when set, else text.
func LineBytes(l *pb.LogLine) []byte {
	if len(l.Data) > 0 || l.Text == "" {
		return l.Data
	}
	return []byte(l.Text)
}

// readerLines turns stored chunks (lines as bytes) into what readers get:
// text always, valid UTF-8 so JSON and browsers can show it, with U+FFFD
// for bytes that are not; data only for lines whose bytes are not valid
// UTF-8, so the raw output stays available without doubling every line.
// Stored chunks are shared with the state store, so it copies.
func readerLines(chunks []*pb.LogChunk) []*pb.LogChunk {
	out := make([]*pb.LogChunk, len(chunks))
	for i, c := range chunks {
		lines := make([]*pb.LogLine, len(c.Lines))
		for k, l := range c.Lines {
			v := &pb.LogLine{Time: l.Time, Stream: l.Stream, Step: l.Step}
			b := LineBytes(l)
			if utf8.Valid(b) {
				v.Text = string(b)
			} else {
				v.Text = strings.ToValidUTF8(string(b), "\uFFFD")
				v.Data = b
			}
			lines[k] = v
		}
		out[i] = &pb.LogChunk{JobId: c.JobId, Seq: c.Seq, Attempt: c.Attempt, Lines: lines}
	}
	return out
}
