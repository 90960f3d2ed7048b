package executor

import (
	"bufio"
	"errors"
	"io"
)

// MaxLineBytes is the longest log line delivered; longer lines arrive as
// several pieces of at most this many bytes.
const MaxLineBytes = 64 << 10

// scanLines reads r to its end, calling emit for each line without its "\n"
// or "\r\n". Lines longer than MaxLineBytes are cut into pieces, and a final
// line without a newline is still delivered. It returns nil at EOF and the
// read error otherwise; the partial line read so far is emitted either way.
func scanLines(r io.Reader, emit func(string)) error {
	br := bufio.NewReaderSize(r, MaxLineBytes)
	// cut is set after emitting a piece of an overlong line; a bare line
	// terminator right after it ends that line rather than being an empty line.
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			text := chunk[:len(chunk)-1]
			if n := len(text); n > 0 && text[n-1] == '\r' {
				text = text[:n-1]
			}
			if len(text) > 0 || !cut {
				emit(string(text))
			}
			cut = false
		case errors.Is(err, bufio.ErrBufferFull):
			// Hold back a trailing '\r': it may be the first half of "\r\n",
			// which must be stripped rather than ending this piece.
			if n := len(chunk); n > 1 && chunk[n-1] == '\r' {
				_ = br.UnreadByte() // cannot fail right after ReadSlice
				chunk = chunk[:n-1]
			}
			emit(string(chunk))
			cut = true
		default:
			if len(chunk) > 0 {
				emit(string(chunk))
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
