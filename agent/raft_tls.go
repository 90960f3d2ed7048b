package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/outpost-run/outpost/internal/tlsutil"
)

// raftHandshakeTimeout bounds a Raft connection's TLS handshake, so a
// peer that connects and says nothing cannot hold a connection open.
const raftHandshakeTimeout = 10 * time.Second

// tlsStreamLayer is Raft's transport over TLS: both sides present server
// certificates and both check that the other's carries server.<domain>,
// so nothing but a server of this cluster can append to the log or vote.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	incoming  *tls.Config
	outgoing  *tls.Config
	logger    hclog.Logger
}

func newTLSStreamLayer(bind string, advertise net.Addr, tc *tlsutil.Configurator, logger hclog.Logger) (*tlsStreamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %s is not a routable IP: set -advertise", advertise)
	}
	return &tlsStreamLayer{ln: ln, advertise: advertise, incoming: tc.IncomingRaft(), outgoing: tc.OutgoingServer(), logger: logger}, nil
}

// Accept hands Raft a TLS connection whose handshake runs on Raft's own
// per-connection goroutine (at the first read), so one slow peer cannot
// hold up the accept loop.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeLogConn{Conn: tls.Server(c, l.incoming), logger: l.logger}, nil
}

func (l *tlsStreamLayer) Close() error   { return l.ln.Close() }
func (l *tlsStreamLayer) Addr() net.Addr { return l.advertise }

// Dial opens a verified connection to another server's Raft port.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: l.outgoing}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) {
			l.logger.Warn("TLS handshake with a Raft peer failed", "peer", address, "reason", err.Error())
		}
		return nil, err
	}
	return c, nil
}

// handshakeLogConn runs the server side's handshake before the first
// read and logs a refusal as one clear WARN line, instead of Raft's
// "failed to decode incoming command" with a raw TLS error.
type handshakeLogConn struct {
	*tls.Conn
	logger hclog.Logger
	once   sync.Once
	err    error
}

func (c *handshakeLogConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		_ = c.Conn.SetDeadline(time.Now().Add(raftHandshakeTimeout))
		c.err = c.Conn.Handshake()
		_ = c.Conn.SetDeadline(time.Time{})
		if c.err != nil {
			c.logger.Warn("TLS handshake refused", "remote", c.RemoteAddr().String(), "reason", tlsutil.ExplainHandshake(c.err.Error()))
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *handshakeLogConn) Write(p []byte) (int, error) {
	if _, err := c.Read(nil); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
