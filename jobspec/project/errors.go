package project

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Pos is a position in a project file. Line and Column are 1-based; a zero
// Line means the problem has no position inside the file (for example a bad
// -var flag), and then only Filename, if any, is meaningful.
type Pos struct {
	Filename string
	Line     int
	Column   int
}

// String returns "file:line:col", or just the file name when there is no
// line, or "" when there is neither.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.Filename
	}
	return fmt.Sprintf("%s:%d:%d", p.Filename, p.Line, p.Column)
}

// IsValid reports whether p points at a place in a file.
func (p Pos) IsValid() bool { return p.Line > 0 }

func posOf(r hcl.Range) Pos {
	return Pos{Filename: r.Filename, Line: r.Start.Line, Column: r.Start.Column}
}

// Diagnostic is one problem found in a project file or in the inputs given
// to Resolve.
type Diagnostic struct {
	Pos     Pos
	Summary string
	Detail  string
}

// String formats the diagnostic as "file:line:col: summary: detail", leaving
// out the position and the detail when they are empty. Newlines are replaced
// by spaces so that an Error always has exactly one line per problem.
func (d Diagnostic) String() string {
	var b strings.Builder
	if p := d.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	b.WriteString(oneLine(d.Summary))
	if d.Detail != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(d.Detail))
	}
	return b.String()
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// Error is the error returned by Parse and Resolve. It always holds at least
// one diagnostic. Callers that want positions (an editor integration, tests)
// can use errors.As to get at it.
type Error struct {
	Diagnostics []Diagnostic
}

// Error returns one line per diagnostic.
func (e *Error) Error() string {
	lines := make([]string, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// Positions returns the position of every diagnostic, in order. Diagnostics
// without a position contribute a zero Pos, so the result lines up with
// Diagnostics.
func (e *Error) Positions() []Pos {
	ps := make([]Pos, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		ps[i] = d.Pos
	}
	return ps
}

// diagnostics collects problems while parsing or resolving, so that one run
// reports as many independent problems as it can instead of stopping at the
// first.
type diagnostics []Diagnostic

func (ds *diagnostics) add(r hcl.Range, summary, detail string) {
	*ds = append(*ds, Diagnostic{Pos: posOf(r), Summary: summary, Detail: detail})
}

func (ds *diagnostics) addf(r hcl.Range, summary, format string, args ...any) {
	ds.add(r, summary, fmt.Sprintf(format, args...))
}

// noPosf records a problem that is not tied to a place in the file.
func (ds *diagnostics) noPosf(summary, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Summary: summary, Detail: fmt.Sprintf(format, args...)})
}

// appendHCL converts the errors among hd and reports whether there were any.
// Warnings are dropped: nothing in this package produces them, and a job
// must not be rejected or cluttered because of one.
func (ds *diagnostics) appendHCL(hd hcl.Diagnostics) bool {
	had := false
	for _, d := range hd {
		if d == nil || d.Severity != hcl.DiagError {
			continue
		}
		had = true
		var p Pos
		switch {
		case d.Subject != nil:
			p = posOf(*d.Subject)
		case d.Context != nil:
			p = posOf(*d.Context)
		}
		detail := d.Detail
		if d.Summary == "Call to unknown function" {
			// hcl may suggest a name; it cannot say how few there are.
			detail += " The only function is shellquote(s)."
		}
		*ds = append(*ds, Diagnostic{Pos: p, Summary: d.Summary, Detail: detail})
	}
	return had
}

// err returns the collected problems as an *Error, or nil when there are
// none. Problems are ordered by position (problems without one first, in the
// order they were found) because hcl reports some of them in map order and
// a stable, top-to-bottom listing is what a person reading them expects.
func (ds diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	out := append([]Diagnostic(nil), ds...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Pos, out[j].Pos
		if a.Line == 0 || b.Line == 0 {
			return a.Line == 0 && b.Line != 0
		}
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	if len(out) > maxReported {
		// A file of garbage yields one problem per byte; nobody reads past
		// the first screenful, and a megabyte-long error would travel back
		// to the client and into logs.
		more := len(out) - maxReported
		out = append(out[:maxReported:maxReported], Diagnostic{
			Summary: "Too many problems",
			Detail:  fmt.Sprintf("%d more problems were not listed; fix the ones above first.", more),
		})
	}
	return &Error{Diagnostics: out}
}

// maxReported is how many problems an Error lists before summarising.
const maxReported = 50
