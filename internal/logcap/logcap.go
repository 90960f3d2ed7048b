// Package logcap holds what runners and servers must agree on about a
// job's log: how a line counts against the limits, and the limit of one
// attempt's log. The runner shapes an attempt's output to fit (a head, a
// tail, a rate); the servers store it and refuse what would not fit, and
// both must count alike for the runner's shaping to be what the servers
// keep. It imports only the wire types.
package logcap

import pb "github.com/outpost-run/outpost/rpc/outpostv1"

// MaxBytes is the most log one attempt of a job keeps, counted by
// LineSize: its head and its tail together. It is a constant rather than
// a setting because every server must apply the same limit to stay
// equal; runners keep their head and tail within it.
const MaxBytes = 4 << 20

// LineOverhead is what a line costs encoded beyond its strings: the
// timestamp, field tags and length prefixes, rounded up. Counting text
// alone let a million one-byte lines cost far more than they were
// counted at.
const LineOverhead = 32

// LineSize is a line's cost against the limits: at least its encoded size.
func LineSize(l *pb.LogLine) int {
	return len(l.Data) + len(l.Text) + len(l.Step) + len(l.Stream) + LineOverhead
}

// Size is the cost of lines.
func Size(lines []*pb.LogLine) int {
	n := 0
	for _, l := range lines {
		n += LineSize(l)
	}
	return n
}
