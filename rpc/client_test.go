package rpc

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackHole is a TCP proxy whose existing connections can be made to drop
// everything in both directions while staying open, as a partition does to
// a connection that was established before it.
type blackHole struct {
	ln      net.Listener
	target  string
	dropped atomic.Bool
	closed  chan struct{} // gets a value each time a client closes its side
	mu      sync.Mutex
	conns   []net.Conn
}

func newBlackHole(t *testing.T, target string) *blackHole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln, target: target, closed: make(chan struct{}, 16)}
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	go b.serve()
	return b
}

func (b *blackHole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", b.target)
		if err != nil {
			c.Close()
			continue
		}
		b.mu.Lock()
		b.conns = append(b.conns, c, u)
		b.mu.Unlock()
		// A connection made while dropping is one made after the
		// partition healed: it flows.
		fresh := b.dropped.Load()
		go func() {
			b.pipe(u, c, fresh)
			b.closed <- struct{}{}
			u.Close()
		}()
		go b.pipe(c, u, fresh)
	}
}

// pipe copies src to dst, or reads and discards once dropping (unless the
// connection is fresh).
func (b *blackHole) pipe(dst, src net.Conn, fresh bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (fresh || !b.dropped.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestStaleConnectionIsReplaced: a connection that went silent is closed
// by the HTTP/2 health check, so a request after the partition does not
// wait on it.
func TestStaleConnectionIsReplaced(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	bh := newBlackHole(t, ln.Addr().String())
	hc := NewHTTPClient()
	get := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+bh.ln.Addr().String()+"/", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	if err := get(t.Context()); err != nil {
		t.Fatalf("request before the partition: %v", err)
	}

	bh.dropped.Store(true)
	// A request on the silent connection fails by its own deadline; the
	// connection must not outlive the health check.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	if err := get(ctx); err == nil {
		t.Fatal("a request through the black hole succeeded")
	}
	cancel()
	select {
	case <-bh.closed:
	case <-time.After(4 * (h2PingAfter + h2PingTimeout)):
		t.Fatalf("the silent connection was not closed within %v", 4*(h2PingAfter+h2PingTimeout))
	}

	// Healed for new connections only: the old one would still drop.
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := get(ctx); err != nil {
		t.Fatalf("request after the silent connection was replaced: %v", err)
	}
}

// An address without a scheme is https:// once the client has a CA.
func TestNormalizeAddressScheme(t *testing.T) {
	for _, tc := range []struct{ in, scheme, want string }{
		{"127.0.0.1:7700", "http", "http://127.0.0.1:7700"},
		{"127.0.0.1:7700", "https", "https://127.0.0.1:7700"},
		{"http://h:1", "https", "http://h:1"},
		{"", "http", "http://127.0.0.1:7700"},
		{"", "https", "https://127.0.0.1:7700"},
	} {
		if got, err := NormalizeAddressScheme(tc.in, tc.scheme); err != nil || got != tc.want {
			t.Errorf("%q with %s: %q %v, want %q", tc.in, tc.scheme, got, err, tc.want)
		}
	}
}
