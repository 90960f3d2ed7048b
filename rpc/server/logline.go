package server

import (
	"strings"
	"unicode/utf8"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

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
			b := rpc.LineBytes(l)
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
