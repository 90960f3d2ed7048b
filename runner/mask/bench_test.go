package mask

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// typicalLog is about 1 MiB of build-log-like text with the given values
// printed now and then, as a step would.
func typicalLog(values []string) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"INFO", "DEBUG", "compiling", "package", "github.com/outpost-run/outpost/runner", "ok", "PASS",
		"downloading", "https://proxy.golang.org/", "v1.2.3", "warning:", "unused", "variable", "=>", "200", "GET", "/api/v1/jobs"}
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "2026-12-02T01:%02d:%02d.%03dZ", i/3600%60, i/60%60, i%1000)
		for range 4 + r.IntN(10) {
			b.WriteByte(' ')
			b.WriteString(words[r.IntN(len(words))])
		}
		if len(values) > 0 && i%500 == 0 {
			b.WriteString(" auth=" + values[r.IntN(len(values))])
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{0, 1, 20} {
		secrets := map[string][]byte{}
		var values []string
		for i := range n {
			v := fmt.Sprintf("tok_%02d_%016x", i, rand.Uint64())
			secrets[fmt.Sprintf("SECRET_%d", i)] = []byte(v)
			values = append(values, v)
		}
		log := typicalLog(values)
		m := New(secrets)
		lines := strings.SplitAfter(string(log), "\n")
		b.Run(fmt.Sprintf("stream/secrets=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(log)))
			for b.Loop() {
				s := m.Writer(io.Discard)
				for i := 0; i < len(log); i += 32 << 10 {
					_, _ = s.Write(log[i:min(i+32<<10, len(log))])
				}
				_ = s.Close()
			}
		})
		b.Run(fmt.Sprintf("line/secrets=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(log)))
			for b.Loop() {
				for _, l := range lines {
					_ = m.Line(l)
				}
			}
		})
	}
}
