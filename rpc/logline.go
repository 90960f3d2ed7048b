package rpc

import pb "github.com/outpost-run/outpost/rpc/outpostv1"

// LineBytes returns a log line's bytes as the step printed them, from an
// answer of any server: data when set, else text.
func LineBytes(l *pb.LogLine) []byte {
	if len(l.Data) > 0 || l.Text == "" {
		return l.Data
	}
	return []byte(l.Text)
}
