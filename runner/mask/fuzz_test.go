package mask

import (
	"bytes"
	"testing"
)

// FuzzMask: for random output, random secret values and random write
// sizes, no form of any value survives except where it overlaps a label
// (a label's own text next to the output's can spell a value again, e.g.
// a value ")hello" after "****(A"), and the stream's result does not
// depend on how the output was cut.
func FuzzMask(f *testing.F) {
	f.Add([]byte("token=hunter2hunter2 ok\n"), []byte("hunter2hunter2"), []byte("secret-value"), []byte{3, 1, 4, 1, 5})
	f.Add([]byte("aGVsbG8gd29ybGQ= and 68656c6c6f20776f726c64"), []byte("hello world"), []byte("world!"), []byte{0})
	f.Add([]byte(`{"p":"a\"b\\c\nd"}`), []byte("a\"b\\c\nd"), []byte("password123"), []byte{1, 2})
	f.Add([]byte("password123 password12"), []byte("password"), []byte("password123"), []byte{7, 7, 7})
	f.Fuzz(func(t *testing.T, in, v1, v2, cuts []byte) {
		secrets := map[string][]byte{"A": v1, "B": v2}
		m := New(secrets)
		want := m.Line(string(in))

		var b bytes.Buffer
		s := m.Writer(&b)
		rest := in
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(n, 1+int(cuts[i%len(cuts)]))
			}
			_, _ = s.Write(rest[:n])
			rest = rest[n:]
		}
		_ = s.Close()
		if b.String() != want {
			t.Fatalf("streamed %q\n    Line %q", b.String(), want)
		}

		out := []byte(want)
		var labels [][2]int
		for _, l := range []string{"****(A)", "****(B)"} {
			for i := 0; ; {
				j := bytes.Index(out[i:], []byte(l))
				if j < 0 {
					break
				}
				labels = append(labels, [2]int{i + j, i + j + len(l)})
				i += j + 1
			}
		}
		for _, v := range secrets {
			if TooShort(v) {
				continue
			}
			for _, form := range Forms(v) {
				if TooShort(form) {
					continue
				}
				for i := 0; ; {
					j := bytes.Index(out[i:], form)
					if j < 0 {
						break
					}
					s, e := i+j, i+j+len(form)
					overlaps := false
					for _, l := range labels {
						overlaps = overlaps || (s < l[1] && l[0] < e)
					}
					if !overlaps {
						t.Fatalf("form %q of %q survives at %d in %q", form, v, s, out)
					}
					i += j + 1
				}
			}
		}
	})
}
