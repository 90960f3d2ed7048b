package mask

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// MinLen is the shortest value masked, in bytes. A shorter value matches
// by chance all over ordinary output ("true", a port number, "admin"), so
// masking it would mangle logs, and it would not protect the value anyway:
// every ****(NAME) then tells a reader where the value occurs and how long
// it is, which for a few bytes is most of the secret. `secret put` warns
// when TooShort says so.
const MinLen = 6

// TooShort reports whether value is too short to be masked (see MinLen),
// for `secret put` to warn before storing it.
func TooShort(value []byte) bool { return len(value) < MinLen }

// Masker searches output for every form of a set of secret values. It is
// immutable once built and safe for concurrent use; each Stream it makes
// is for one goroutine. A nil or empty Masker passes output through
// unchanged, without allocating.
type Masker struct {
	auto *automaton
	// patterns[i] is the name index of pattern i, lens[i] its length.
	names  [][]byte // "****(NAME)" per name
	owner  []int32
	lens   []int32
	maxLen int
}

// Option configures New.
type Option func(*config)

type config struct{ minLen int }

// WithMinLen changes the shortest value masked (MinLen by default); for
// tests and for operators who accept the trade-off MinLen explains. It is
// never below 1.
func WithMinLen(n int) Option { return func(c *config) { c.minLen = max(n, 1) } }

// New builds a Masker for secrets (name → value). Values shorter than the
// minimum length are left out (see MinLen); when two secrets share a form,
// the one with the smaller name labels it.
func New(secrets map[string][]byte, opts ...Option) *Masker {
	cfg := config{minLen: MinLen}
	for _, o := range opts {
		o(&cfg)
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	slices.Sort(names)
	m := &Masker{}
	seen := map[string]bool{}
	var patterns [][]byte
	for _, n := range names {
		v := secrets[n]
		if len(v) < cfg.minLen {
			continue
		}
		idx := int32(len(m.names))
		m.names = append(m.names, []byte("****("+n+")"))
		for _, f := range Forms(v) {
			if len(f) < cfg.minLen || seen[string(f)] {
				continue
			}
			seen[string(f)] = true
			patterns = append(patterns, f)
			m.owner = append(m.owner, idx)
			m.lens = append(m.lens, int32(len(f)))
			m.maxLen = max(m.maxLen, len(f))
		}
	}
	if len(patterns) > 0 {
		m.auto = newAutomaton(patterns)
	}
	return m
}

// empty reports whether m masks nothing.
func (m *Masker) empty() bool { return m == nil || m.auto == nil }

// Forms returns the byte strings that mask searches for one value: the
// value itself and each encoded form, without duplicates. A value ending
// in a line terminator (as `echo value | outpost secret put` would send)
// also gets the forms of the value without it, since a step prints it both
// ways. Exported so tests and the grep test of issue 16 check the same
// list.
func Forms(v []byte) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	add := func(f []byte) {
		if len(f) > 0 && !seen[string(f)] {
			seen[string(f)] = true
			out = append(out, f)
		}
	}
	values := [][]byte{v}
	if t := bytes.TrimRight(v, "\r\n"); len(t) > 0 && len(t) < len(v) {
		values = append(values, t)
	}
	for _, v := range values {
		add(v)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			add([]byte(enc.EncodeToString(v)))
			raw := enc.WithPadding(base64.NoPadding)
			add([]byte(raw.EncodeToString(v)))
			for k := 1; k <= 2; k++ {
				add(base64Core(raw, v, k))
			}
			add(base64Core(raw, v, 0))
		}
		add([]byte(url.QueryEscape(string(v))))
		add([]byte(url.PathEscape(string(v))))
		add([]byte(hex.EncodeToString(v)))
		add([]byte(strings.ToUpper(hex.EncodeToString(v))))
		for _, f := range jsonForms(v) {
			add(f)
		}
	}
	return out
}

// base64Core is the part of the base64 of v that is the same wherever v
// sits in a longer stream, when k bytes of that stream precede v in its
// 3-byte group: a character is kept only if all six of its bits come from
// v. Base64 of a document holding v at any offset therefore contains one
// of the three cores (k = 0, 1, 2). A stream cut into lines (base64 -w76)
// is not caught where a line break falls inside the core.
func base64Core(raw *base64.Encoding, v []byte, k int) []byte {
	enc := raw.EncodeToString(append(make([]byte, k), v...))
	groups, rest := (len(v)+k)/3, (len(v)+k)%3
	// In the last, partial group the following unknown bytes fill the low
	// bits: 1 byte of v fixes 1 character, 2 bytes fix 2.
	end := 4*groups + rest
	// In the first group the k unknown bytes fill the high bits: k = 1
	// spoils 2 characters, k = 2 spoils 3.
	start := [3]int{0, 2, 3}[k]
	if end <= start {
		return nil
	}
	return []byte(enc[start:end])
}

// jsonForms is v as it appears between the quotes of a JSON string:
// encoding/json's default (HTML characters escaped), with SetEscapeHTML
// false, and ASCII-only escaping (\u00e9, surrogate pairs) as Python's
// json.dumps and others write it.
func jsonForms(v []byte) [][]byte {
	var out [][]byte
	if b, err := json.Marshal(string(v)); err == nil {
		out = append(out, b[1:len(b)-1])
	}
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if e.Encode(string(v)) == nil {
		b := bytes.TrimRight(buf.Bytes(), "\n")
		out = append(out, b[1:len(b)-1])
	}
	var a strings.Builder
	for s := string(v); s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		switch {
		case r == '"' || r == '\\':
			a.WriteByte('\\')
			a.WriteRune(r)
		case r == '\n':
			a.WriteString(`\n`)
		case r == '\r':
			a.WriteString(`\r`)
		case r == '\t':
			a.WriteString(`\t`)
		case r == '\b':
			a.WriteString(`\b`)
		case r == '\f':
			a.WriteString(`\f`)
		case r < 0x20 || (r >= 0x80 && r <= 0xffff):
			fmt.Fprintf(&a, `\u%04x`, r)
		case r > 0xffff:
			r1, r2 := utf16Pair(r)
			fmt.Fprintf(&a, `\u%04x\u%04x`, r1, r2)
		default:
			a.WriteRune(r)
		}
	}
	out = append(out, []byte(a.String()))
	return out
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}
