package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

// streamed masks text written in the given pieces through a Stream.
func streamed(t testing.TB, m *Masker, pieces ...string) string {
	t.Helper()
	var b bytes.Buffer
	s := m.Writer(&b)
	for _, p := range pieces {
		if _, err := s.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const pw = `s3cr3t"pa\ss
wörd`

func TestLine(t *testing.T) {
	pwb := []byte(pw)
	jsonStr := func(v string) string { b, _ := json.Marshal(v); return string(b[1 : len(b)-1]) }
	tests := []struct {
		name    string
		secrets map[string][]byte
		in      string
		want    string
	}{
		{"raw", map[string][]byte{"PW": pwb}, "x " + pw + " y", "x ****(PW) y"},
		{"base64 std", map[string][]byte{"PW": pwb}, "Authorization: Basic " + base64.StdEncoding.EncodeToString(pwb), "Authorization: Basic ****(PW)"},
		{"base64 std raw", map[string][]byte{"PW": pwb}, "[" + base64.RawStdEncoding.EncodeToString(pwb) + "]", "[****(PW)]"},
		{"base64 url", map[string][]byte{"PW": pwb}, "t=" + base64.URLEncoding.EncodeToString(pwb), "t=****(PW)"},
		{"base64 url raw", map[string][]byte{"PW": pwb}, "t=" + base64.RawURLEncoding.EncodeToString(pwb) + ".", "t=****(PW)."},
		{"query escape", map[string][]byte{"PW": pwb}, "?p=" + url.QueryEscape(pw) + "&x=1", "?p=****(PW)&x=1"},
		{"path escape", map[string][]byte{"PW": pwb}, "/u/" + url.PathEscape(pw) + "/x", "/u/****(PW)/x"},
		{"hex lower", map[string][]byte{"PW": pwb}, "h " + hex.EncodeToString(pwb), "h ****(PW)"},
		{"hex upper", map[string][]byte{"PW": pwb}, "h " + strings.ToUpper(hex.EncodeToString(pwb)), "h ****(PW)"},
		{"json", map[string][]byte{"PW": pwb}, `{"p":"` + jsonStr(pw) + `"}`, `{"p":"****(PW)"}`},
		{"json ascii", map[string][]byte{"PW": pwb}, `{"p":"s3cr3t\"pa\\ss\nw\u00f6rd"}`, `{"p":"****(PW)"}`},
		{"json html", map[string][]byte{"T": []byte("<tok&en>")}, `"\u003ctok\u0026en\u003e"`, `"****(T)"`},
		{"twice", map[string][]byte{"A": []byte("abcdefgh")}, "abcdefghabcdefgh", "****(A)****(A)"},
		{"short not masked", map[string][]byte{"A": []byte("abc12")}, "abc12 abc12", "abc12 abc12"},
		{"prefix secret: longer wins", map[string][]byte{"A": []byte("password"), "B": []byte("password123")},
			"password123 password12", "****(B) ****(A)12"},
		{"overlap: both masked", map[string][]byte{"A": []byte("abcdefgh"), "B": []byte("efghijkl")},
			"xabcdefghijklx", "x****(A)****(B)x"},
		{"contained: outer wins", map[string][]byte{"A": []byte("1234567890"), "B": []byte("345678")},
			"01234567890 345678", "0****(A) ****(B)"},
		{"replacement not re-matched", map[string][]byte{"A": []byte("aaaaaaaa"), "B": []byte("****(A)")},
			"aaaaaaaa", "****(A)"},
		{"run of one secret", map[string][]byte{"A": []byte("aaaaaa")}, "baaaaaaaaaaab", "b****(A)b"},
		{"trailing newline trimmed too", map[string][]byte{"A": []byte("hunter22\n")}, "pw=hunter22;", "pw=****(A);"},
		{"empty map", nil, "anything", "anything"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.secrets)
			if got := m.Line(tt.in); got != tt.want {
				t.Errorf("Line\n got %q\nwant %q", got, tt.want)
			}
			if got := streamed(t, m, tt.in); got != tt.want {
				t.Errorf("Stream\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestSplitEveryOffset writes each form of a value in two writes cut at
// every byte offset, and byte by byte.
func TestSplitEveryOffset(t *testing.T) {
	secrets := map[string][]byte{"PW": []byte(pw), "K": []byte("AKIAIOSFODNN7EXAMPLE")}
	m := New(secrets)
	for name, v := range secrets {
		for fi, f := range Forms(v) {
			text := "before " + string(f) + " after"
			want := m.Line(text)
			if strings.Contains(want, string(f)) || !strings.Contains(want, "****("+name+")") {
				t.Fatalf("form %d %q: Line gave %q", fi, f, want)
			}
			for i := 0; i <= len(text); i++ {
				if got := streamed(t, m, text[:i], text[i:]); got != want {
					t.Fatalf("form %d split at %d: %q, want %q", fi, i, got, want)
				}
			}
			if got := streamed(t, m, strings.Split(text, "")...); got != want {
				t.Fatalf("form %d byte by byte: %q, want %q", fi, got, want)
			}
		}
	}
}

// TestReaderChunks reads a log in chunks of every size, one byte at a
// time and in half reads: as the runner reads a step's pipe.
func TestReaderChunks(t *testing.T) {
	m := New(map[string][]byte{"PW": []byte(pw), "TOKEN": []byte("ghp_0123456789abcdef")})
	log := "line 1\nexport TOKEN=ghp_0123456789abcdef\n" + pw + "\n" +
		base64.StdEncoding.EncodeToString([]byte("user:ghp_0123456789abcdef")) + "\nend"
	want := m.Line(log)
	for _, r := range []struct {
		name string
		r    io.Reader
	}{
		{"one byte", iotest.OneByteReader(strings.NewReader(log))},
		{"half", iotest.HalfReader(strings.NewReader(log))},
		{"data and EOF", iotest.DataErrReader(strings.NewReader(log))},
	} {
		got, err := io.ReadAll(m.Reader(r.r))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", r.name, got, err, want)
		}
	}
	for _, leak := range []string{"ghp_0123456789abcdef", pw} {
		if strings.Contains(want, leak) {
			t.Errorf("%q survives in %q", leak, want)
		}
	}
}

// TestHoldBack: bytes that cannot begin a value are written at once, so a
// live log is not delayed; a possible beginning waits for Flush.
func TestHoldBack(t *testing.T) {
	m := New(map[string][]byte{"A": []byte("secret-value")})
	var b bytes.Buffer
	s := m.Writer(&b)
	_, _ = s.Write([]byte("waiting for input\n"))
	if b.String() != "waiting for input\n" {
		t.Fatalf("held back %q", b.String())
	}
	_, _ = s.Write([]byte("x secret-"))
	if b.String() != "waiting for input\nx " {
		t.Fatalf("wrote %q", b.String())
	}
	_ = s.Flush()
	if b.String() != "waiting for input\nx secret-" {
		t.Fatalf("after flush %q", b.String())
	}
}

func TestManySecrets(t *testing.T) {
	secrets := map[string][]byte{}
	var in, want strings.Builder
	for i := range 40 {
		name := fmt.Sprintf("S%02d", i)
		v := fmt.Sprintf("value-%02d-%x", i, i*7919)
		secrets[name] = []byte(v)
		fmt.Fprintf(&in, "%d %s %s\n", i, v, hex.EncodeToString([]byte(v)))
		fmt.Fprintf(&want, "%d ****(%s) ****(%s)\n", i, name, name)
	}
	m := New(secrets)
	if got := m.Line(in.String()); got != want.String() {
		t.Fatalf("got\n%s\nwant\n%s", got, want.String())
	}
	text := in.String()
	for _, cut := range []int{1, 7, 13, 64} {
		var pieces []string
		for i := 0; i < len(text); i += cut {
			pieces = append(pieces, text[i:min(i+cut, len(text))])
		}
		if got := streamed(t, m, pieces...); got != want.String() {
			t.Fatalf("pieces of %d: got\n%s", cut, got)
		}
	}
}

// TestJSONDocument masks a value inside a JSON document an encoder wrote.
func TestJSONDocument(t *testing.T) {
	m := New(map[string][]byte{"PW": []byte(pw)})
	doc, err := json.MarshalIndent(map[string]any{"user": "ci", "auth": map[string]string{"password": pw}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := m.Line(string(doc))
	var back map[string]any
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("masked document is no longer JSON: %v\n%s", err, got)
	}
	if p := back["auth"].(map[string]any)["password"]; p != "****(PW)" {
		t.Fatalf("password %q in\n%s", p, got)
	}
}

// TestBase64Embedded: base64 of a longer document holding the value at
// each alignment still has the value masked.
func TestBase64Embedded(t *testing.T) {
	v := "correct horse battery staple"
	m := New(map[string][]byte{"H": []byte(v)})
	for pre := range 6 {
		for post := range 4 {
			doc := strings.Repeat("p", pre) + v + strings.Repeat("q", post)
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				got := m.Line("data: " + enc.EncodeToString([]byte(doc)))
				if !strings.Contains(got, "****(H)") {
					t.Errorf("pre %d post %d: not masked: %q", pre, post, got)
				}
			}
		}
	}
}

func TestTooShort(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{{"", true}, {"12345", true}, {"123456", false}} {
		if got := TooShort([]byte(tt.v)); got != tt.want {
			t.Errorf("TooShort(%q) = %v", tt.v, got)
		}
	}
	if New(map[string][]byte{"A": []byte("abc")}, WithMinLen(3)).Line("abc") != "****(A)" {
		t.Error("WithMinLen(3) did not mask a 3-byte value")
	}
}

// TestPassthroughNoAlloc: with no secrets the hot path allocates nothing.
func TestPassthroughNoAlloc(t *testing.T) {
	for _, m := range []*Masker{nil, New(nil), New(map[string][]byte{"A": []byte("ab")})} {
		line := "an ordinary line of output"
		if a := testing.AllocsPerRun(100, func() { _ = m.Line(line) }); a != 0 {
			t.Errorf("Line allocates %v", a)
		}
		s := m.Writer(io.Discard)
		p := []byte(line)
		if a := testing.AllocsPerRun(100, func() { _, _ = s.Write(p) }); a != 0 {
			t.Errorf("Write allocates %v", a)
		}
	}
	m := New(map[string][]byte{"A": []byte("secret-value")})
	if a := testing.AllocsPerRun(100, func() { _ = m.Line("nothing to see here") }); a != 0 {
		t.Errorf("Line without a match allocates %v", a)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteError(t *testing.T) {
	s := New(map[string][]byte{"A": []byte("secret-value")}).Writer(failWriter{})
	if _, err := s.Write([]byte("hello\n")); err == nil {
		t.Fatal("no error from a failing writer")
	}
	if err := s.Flush(); err == nil {
		t.Fatal("Flush forgot the error")
	}
}

// TestBinaryValue: a value holding every byte (a raw key) gets 257 byte
// classes; and a long one (a private key) stays cheap to build.
func TestBinaryValue(t *testing.T) {
	v := make([]byte, 4096)
	for i := range v {
		v[i] = byte(i * 7)
	}
	m := New(map[string][]byte{"KEY": v})
	in := "x" + string(v) + "y" + base64.StdEncoding.EncodeToString(v)
	if got := m.Line(in); got != "x****(KEY)y****(KEY)" {
		t.Fatalf("got %q", got)
	}
}
