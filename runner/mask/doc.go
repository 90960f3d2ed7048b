// Package mask replaces secret values in a job's output with ****(NAME)
// before the runner stores or sends any of it (issue 16, "Masking").
//
// A Masker is built once per execution from the secrets that execution
// uses (name → value). For each value it searches the exact bytes and the
// forms a step commonly prints a value in: base64 (standard and URL
// alphabets, padded and not, and the stable core of the value inside a
// longer base64 stream at each of the three byte alignments), URL query and
// path escaping, hex (lower and upper case) and JSON string escaping (as
// encoding/json writes it, with and without HTML escaping, and ASCII-only
// \uXXXX escaping as other encoders write it). All forms of all secrets are
// searched in one pass by a small Aho–Corasick automaton (automaton.go).
//
// Values shorter than MinLen bytes are not masked; see MinLen.
//
// Two ways in: Line masks one whole string (a system line, a reason), and
// Stream masks a byte stream across write boundaries, holding back only
// the bytes that may still be the start of a match. The runner wraps each
// step's stdout and stderr with Reader before the executor cuts them into
// lines, so a value split across two reads, across two pieces of an
// overlong line, or containing a newline itself is still found (see
// Reader for why bytes and not lines).
//
// It imports the standard library only: it must not reach server code
// (scripts/check-imports.sh checks runner/...) and needs nothing else.
package mask
