package executor

import (
	"bufio"
	"errors"
	"io"
)

// MaxLineBytes is the longest log line delivered; longer lines arrive as
// several pieces of at most this many bytes, followed by a system line
// that says so (see scanLines).
const MaxLineBytes = 64 << 10

// scanLines reads r to its end, calling emit for each line without its "\n"
// or "\r\n". Lines longer than MaxLineBytes are cut into pieces, and after
// the last piece of such a line split is called with how many pieces it
// was and how many bytes they hold, so that a reader learns the pieces are
// one line (the pieces themselves stay the step's bytes, unmarked). A
// final line without a newline is still delivered. It returns nil at EOF
// and the read error otherwise; the partial line read so far is emitted
// either way.
func scanLines(r io.Reader, emit func(string), split func(pieces, bytes int)) error {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	// cut is set after emitting a piece of an overlong line; a bare line
	// terminator right after it ends that line rather than being an empty line.
	cut := false
	// pieces and bytes count what was emitted of the current line.
	pieces, bytes := 0, 0
	piece := func(text []byte) {
		emit(string(text))
		pieces++
		bytes += len(text)
	}
	endLine := func() {
		if pieces > 1 && split != nil {
			split(pieces, bytes)
		}
		pieces, bytes, cut = 0, 0, false
	}
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			text := chunk[:len(chunk)-1]
			if n := len(text); n > 0 && text[n-1] == '\r' {
				text = text[:n-1]
			}
			if len(text) > 0 || !cut {
				piece(text)
			}
			endLine()
		case errors.Is(err, bufio.ErrBufferFull):
			// Hold back a trailing '\r': it may be the first half of "\r\n",
			// which must be stripped rather than ending this piece.
			if n := len(chunk); n > 1 && chunk[n-1] == '\r' {
				_ = br.UnreadByte() // cannot fail right after ReadSlice
				chunk = chunk[:n-1]
			}
			piece(chunk)
			cut = true
		default:
			if len(chunk) > 0 {
				piece(chunk)
			}
			endLine()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
