package executor

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestScanLines(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	// A split line is followed by "<split pieces bytes>" in want.
	split := func(pieces, bytes int) string { return fmt.Sprintf("<split %d %d>", pieces, bytes) }
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty input", "", nil},
		{"lines", "a\nb\n", []string{"a", "b"}},
		{"empty lines kept", "\n\na\n", []string{"", "", "a"}},
		{"crlf stripped", "a\r\nb\r\n", []string{"a", "b"}},
		{"lone cr kept", "a\rb\n", []string{"a\rb"}},
		{"partial last line", "a\nno newline", []string{"a", "no newline"}},
		{"split long line", long(2*MaxLineBytes+10) + "\nz\n", []string{long(MaxLineBytes), long(MaxLineBytes), long(10), split(3, 2*MaxLineBytes+10), "z"}},
		{"split long crlf line", long(MaxLineBytes+3) + "\r\nz\n", []string{long(MaxLineBytes), long(3), split(2, MaxLineBytes+3), "z"}},
		{"exactly max then newline", long(MaxLineBytes) + "\nz\n", []string{long(MaxLineBytes), "z"}},
		{"exactly max then crlf", long(MaxLineBytes) + "\r\nz\n", []string{long(MaxLineBytes), "z"}},
		{"crlf straddles the cut", long(MaxLineBytes-1) + "\r\nz\n", []string{long(MaxLineBytes - 1), "z"}},
		{"long partial last line", long(MaxLineBytes + 1), []string{long(MaxLineBytes), "x", split(2, MaxLineBytes+1)}},
		{"two long lines", long(MaxLineBytes+1) + "\n" + long(MaxLineBytes+2) + "\n", []string{long(MaxLineBytes), "x", split(2, MaxLineBytes+1), long(MaxLineBytes), "xx", split(2, MaxLineBytes+2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Byte-by-byte input checks that the result does not depend on
			// how a pipe happens to chunk the data.
			readers := map[string]io.Reader{
				"whole":    strings.NewReader(tt.in),
				"one byte": iotest.OneByteReader(strings.NewReader(tt.in)),
			}
			for name, r := range readers {
				var got []string
				if err := scanLines(r, func(s string) { got = append(got, s) }, func(pieces, bytes int) { got = append(got, split(pieces, bytes)) }); err != nil {
					t.Fatalf("%s: scanLines: %v", name, err)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s: got %q, want %q", name, summarize(got), summarize(tt.want))
				}
			}
		})
	}
}

func TestScanLinesReadError(t *testing.T) {
	t.Parallel()
	// TimeoutReader succeeds once and then fails: the partial line read so
	// far must still be delivered, and the error returned.
	var got []string
	err := scanLines(iotest.TimeoutReader(strings.NewReader("partial")), func(s string) { got = append(got, s) }, nil)
	if err == nil {
		t.Fatal("scanLines returned nil, want the read error")
	}
	if !slices.Equal(got, []string{"partial"}) {
		t.Errorf("got %q, want [partial]", got)
	}
}

// summarize keeps failure messages readable when lines are 64 KiB long.
func summarize(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) > 40 {
			l = fmt.Sprintf("%.20s...(%d bytes)", l, len(l))
		}
		out[i] = l
	}
	return out
}
