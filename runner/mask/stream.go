package mask

import (
	"bytes"
	"cmp"
	"io"
	"slices"
)

// match is one occurrence of a pattern, in absolute stream offsets.
type match struct {
	start, end int64
	// from is where the match began; start is later when that head was
	// already released inside a masked region (clipped), and the match
	// then continues that region.
	from int64
	name int32
}

// Stream masks a byte stream written in any number of pieces: a value
// split across writes is masked as if written at once. It holds back only
// the bytes that are still a prefix of some pattern (the automaton's
// depth, never more than the longest form's length), so output that
// cannot be part of a secret is written at once and a live log shows a
// line as soon as the step prints it. Flush (or Close) releases what is
// held back at the end of a step's output.
type Stream struct {
	m *Masker
	w io.Writer

	state int32
	pos   int64  // bytes consumed
	done  int64  // bytes before this offset are written or dropped
	held  []byte // bytes [done, pos)
	found []match
	// last is the label of the region that ended at done, -1 if none.
	last int32
	out  []byte
	err  error
}

// Writer returns a Stream writing the masked form of what it is given to w.
// Close flushes; it does not close w.
func (m *Masker) Writer(w io.Writer) *Stream { return &Stream{m: m, w: w, last: -1} }

// Write masks p and writes what is decided of it to the underlying writer.
// It reports len(p) unless the underlying writer failed.
func (s *Stream) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.m.empty() {
		return s.w.Write(p)
	}
	s.scan(p)
	win := p
	if len(s.held) > 0 {
		s.held = append(s.held, p...)
		win = s.held
	}
	s.decide(win, s.pos-int64(s.m.auto.depth[s.state]))
	if s.err != nil {
		return 0, s.err
	}
	return len(p), nil
}

// Flush releases every byte held back (the stream's end: a value split
// across a Flush is not matched) and starts afresh.
func (s *Stream) Flush() error {
	if s.err != nil || s.m.empty() {
		return s.err
	}
	s.decide(s.held, s.pos)
	s.state, s.last = 0, -1
	return s.err
}

// Close flushes.
func (s *Stream) Close() error { return s.Flush() }

// scan runs the automaton over p, recording every match that ends in it.
func (s *Stream) scan(p []byte) {
	a := s.m.auto
	// Locals, so the loop does not reload them through a after each append.
	fast, hit, class, nc := a.fast, a.hit, &a.class, int32(a.nclass)
	st := s.state
	// off is st's row offset while st is dense and the fast path holds;
	// st itself is then only brought up to date when leaving the loop.
	off := a.offset(st)
	for i, c := range p {
		if off >= 0 {
			e := fast[off+int32(class[c])]
			if e >= 0 {
				off = e
				continue
			}
			st = ^e
		} else {
			st = a.step(st, class[c])
		}
		off = a.offset(st)
		if !hit[st] {
			continue
		}
		end := s.pos + int64(i) + 1
		t := st
		if a.out[t] < 0 {
			t = a.dict[t]
		}
		for ; t >= 0; t = a.dict[t] {
			pat := a.out[t]
			from := end - int64(s.m.lens[pat])
			s.found = append(s.found, match{start: max(from, s.done), end: end, from: from, name: s.m.owner[pat]})
		}
	}
	if off >= 0 {
		st = a.rowState[off/nc]
	}
	s.state = st
	s.pos += int64(len(p))
}

// decide writes the bytes of win (which starts at offset done) before
// upTo, with every masked region that starts before upTo replaced by its
// labels. No match can still begin before upTo, so a region starting there
// is complete except for matches that begin after upTo and overlap it;
// those are clipped in scan. The bytes after upTo are kept in held.
func (s *Stream) decide(win []byte, upTo int64) {
	base := s.done
	out := s.out[:0]
	// In the order of where matches began, as Line sees them: the labels
	// then do not depend on where writes were cut.
	slices.SortFunc(s.found, func(a, b match) int {
		if c := cmp.Compare(a.from, b.from); c != 0 {
			return c
		}
		return cmp.Compare(b.end, a.end) // the longer first: it wins
	})
	i := 0
	for i < len(s.found) && s.found[i].start < upTo {
		// The region: matches overlapping one another, transitively. One
		// that was clipped makes it the rest of the region released
		// last, whose last label it continues.
		rs, re := s.found[i].start, s.found[i].end
		j, label := i, int32(-1)
		for ; j < len(s.found) && s.found[j].start < re; j++ {
			re = max(re, s.found[j].end)
			if s.found[j].from < s.found[j].start {
				label = s.last
			}
		}
		out = append(out, win[s.done-base:rs-base]...)
		cov := s.done
		for _, mt := range s.found[i:j] {
			if mt.end <= cov {
				continue // inside what is masked already: a prefix secret, a shorter form
			}
			cov = mt.end
			if mt.name != label {
				label = mt.name
				out = append(out, s.m.names[label]...)
			}
		}
		s.last = label
		s.done, i = re, j
	}
	if s.done < upTo {
		out = append(out, win[s.done-base:upTo-base]...)
		s.done = upTo
	}
	s.found = s.found[:copy(s.found, s.found[i:])]
	rest := win[s.done-base:]
	if len(s.held) > 0 && &win[0] == &s.held[0] {
		s.held = s.held[:copy(s.held, rest)]
	} else {
		s.held = append(s.held[:0], rest...)
	}
	s.out = out
	if len(out) > 0 {
		if _, err := s.w.Write(out); err != nil {
			s.err = err
		}
	}
	if cap(s.out) > 64<<10 {
		s.out = nil // a large write's output is not kept for the next one
	}
}

// Line masks one whole string: the stream's result for text written at
// once and flushed. Text with nothing to mask is returned as it is,
// without allocating.
func (m *Masker) Line(text string) string {
	if m.empty() || !m.contains(text) {
		return text
	}
	var b bytes.Buffer
	s := m.Writer(&b)
	_, _ = s.Write([]byte(text))
	_ = s.Flush()
	return b.String()
}

// contains reports whether any pattern occurs in text.
func (m *Masker) contains(text string) bool {
	a := m.auto
	fast, class := a.fast, &a.class
	st, off := int32(0), a.offset(0)
	for i := 0; i < len(text); i++ {
		c := class[text[i]]
		if off >= 0 {
			e := fast[off+int32(c)]
			if e >= 0 {
				off = e
				continue
			}
			st = ^e
		} else {
			st = a.step(st, c)
		}
		if a.hit[st] {
			return true
		}
		off = a.offset(st)
	}
	return false
}

// Reader returns r's bytes masked. The runner puts it between a step's
// stdout or stderr pipe and the executor's line scanner: masking bytes
// rather than the lines cut from them catches a value that spans a line
// cut (a piece of an overlong line ends inside it) or holds a newline of
// its own, and a read returns as soon as the bytes read cannot be part of
// a secret, so live output is not delayed. At r's end (any error) what is
// held back is released before the error is returned.
func (m *Masker) Reader(r io.Reader) io.Reader {
	if m.empty() {
		return r
	}
	mr := &reader{r: r, buf: make([]byte, 32<<10)}
	mr.s = m.Writer(&mr.out)
	return mr
}

type reader struct {
	r   io.Reader
	s   *Stream
	buf []byte
	out bytes.Buffer
	err error
}

func (r *reader) Read(p []byte) (int, error) {
	for r.out.Len() == 0 && r.err == nil {
		n, err := r.r.Read(r.buf)
		_, _ = r.s.Write(r.buf[:n]) // bytes.Buffer does not fail
		if err != nil {
			_ = r.s.Flush()
			r.err = err
		}
	}
	if r.out.Len() > 0 {
		return r.out.Read(p)
	}
	return 0, r.err
}
