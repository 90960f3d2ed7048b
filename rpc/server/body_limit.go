package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
)

// limitUnaryBody makes an oversized unary request answer 413 Content Too
// Large, as HTTP says, instead of connect's 429 Too Many Requests (connect
// reports every limit as resource_exhausted, and maps that to 429, which
// tells a client to slow down and try again: the same request then fails
// again, for ever). The limit itself stays connect's (WithReadMaxBytes,
// the same max): a body with a Content-Length above it is answered here
// without being read; a body of unknown length is counted as connect
// reads it, and its answer's status is changed if it went over.
//
// Only the Connect protocol's unary calls (a POST of application/json or
// application/proto) have an HTTP status of their own. Streams carry many
// messages in one body, each with its own limit, and gRPC answers every
// call with 200 and a grpc-status; those pass through untouched.
func limitUnaryBody(h http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !unaryConnect(r.Header.Get("Content-Type")) {
			h.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > max {
			writeTooLarge(w, fmt.Sprintf("request body is %d bytes; the limit is %d bytes (%s)", r.ContentLength, max, sizeString(max)))
			return
		}
		body := &countedBody{ReadCloser: r.Body, max: max}
		r.Body = body
		h.ServeHTTP(&tooLargeWriter{ResponseWriter: w, body: body}, r)
	})
}

// unaryConnect reports whether a content type is that of a unary call in
// the Connect protocol.
func unaryConnect(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.ToLower(strings.TrimSpace(ct))
	return ct == "application/json" || ct == "application/proto"
}

// writeTooLarge answers 413 with the body of a Connect error, so connect
// clients read its code and message as from any other error.
func writeTooLarge(w http.ResponseWriter, msg string) {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"resource_exhausted", msg})
	w.Header().Set("Content-Type", "application/json")
	// The body is not read: the connection cannot be reused.
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_, _ = w.Write(b)
}

func sizeString(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// countedBody counts what is read of a request body.
type countedBody struct {
	io.ReadCloser
	max  int64
	read atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *countedBody) over() bool { return b.read.Load() > b.max }

// tooLargeWriter turns the status connect gives an oversized message
// (429) into 413, when the body did go over the limit.
type tooLargeWriter struct {
	http.ResponseWriter
	body *countedBody
}

func (w *tooLargeWriter) WriteHeader(code int) {
	if code == http.StatusTooManyRequests && w.body.over() {
		code = http.StatusRequestEntityTooLarge
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *tooLargeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *tooLargeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
