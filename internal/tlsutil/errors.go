package tlsutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ExplainHandshake turns a TLS handshake error seen by a server into what
// went wrong, in words an operator can act on.
func ExplainHandshake(msg string) string {
	switch {
	case strings.Contains(msg, "does not look like a TLS handshake"):
		return "not TLS: a plain-HTTP client on the TLS port (it must use https:// and the cluster's CA)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the client's certificate is not signed by this agent's CA (ca_file)"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: bad certificate"):
		return "the client does not trust this agent's certificate: it has another CA"
	case strings.Contains(msg, "remote error: tls: expired certificate"):
		return "the client says this agent's certificate expired"
	case strings.Contains(msg, "certificate has expired or is not yet valid"):
		return "the client's certificate expired or is not yet valid: " + afterLast(msg, "x509: ")
	case strings.Contains(msg, "didn't provide a certificate"),
		strings.Contains(msg, "client didn't provide a certificate"):
		return "no client certificate: this port requires one (verify_incoming, or the Raft port)"
	case strings.Contains(msg, "certificate is required"):
		return "wrong certificate role: " + afterLast(msg, "certificate is required; ")
	case strings.Contains(msg, "protocol version not supported"),
		strings.Contains(msg, "no cipher suite supported"):
		return "the client's TLS version or ciphers are below min_version: " + msg
	case strings.HasSuffix(msg, "EOF"), strings.Contains(msg, "connection reset"):
		return "the client hung up during the handshake (it may not trust this agent's certificate)"
	}
	return msg
}

func afterLast(s, sep string) string {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[i+len(sep):]
	}
	return s
}

// ServerErrorLog is an http.Server's ErrorLog that writes to logger: a
// "TLS handshake error" becomes one WARN line that says why, everything
// else keeps the level hclog infers.
func ServerErrorLog(logger hclog.Logger) *log.Logger {
	std := logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true})
	return log.New(&errorLogWriter{logger: logger, std: std}, "", 0)
}

type errorLogWriter struct {
	logger hclog.Logger
	std    io.Writer
}

const handshakePrefix = "http: TLS handshake error from "

func (w *errorLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	rest, ok := strings.CutPrefix(line, handshakePrefix)
	if !ok {
		return w.std.Write(p)
	}
	remote, msg, _ := strings.Cut(rest, ": ")
	if strings.Contains(msg, "does not look like a TLS handshake") || strings.Contains(msg, "HTTP request to an HTTPS server") {
		// PlainHTTPListener has said so already, with the request line.
		return len(p), nil
	}
	w.logger.Warn("TLS handshake refused", "remote", remote, "reason", ExplainHandshake(msg))
	return len(p), nil
}

// PlainHTTPListener wraps the raw listener under a TLS one: a connection
// whose first bytes are not a TLS handshake (a plain-HTTP client, say) is
// logged as one WARN line naming the client, which Go's server would
// otherwise answer with a 400 and not log at all.
func PlainHTTPListener(ln net.Listener, logger hclog.Logger) net.Listener {
	return &plainDetector{Listener: ln, logger: logger}
}

type plainDetector struct {
	net.Listener
	logger hclog.Logger
}

func (l *plainDetector) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstReadConn{Conn: c, logger: l.logger}, nil
}

type firstReadConn struct {
	net.Conn
	logger hclog.Logger
	once   sync.Once
}

// tlsHandshakeRecord is the first byte of every TLS connection.
const tlsHandshakeRecord = 0x16

func (c *firstReadConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			if p[0] == tlsHandshakeRecord {
				return
			}
			first, _, _ := bufio.NewReader(bytes.NewReader(p[:n])).ReadLine()
			if len(first) > 60 {
				first = first[:60]
			}
			c.logger.Warn("TLS handshake refused", "remote", c.RemoteAddr().String(),
				"reason", fmt.Sprintf("not TLS: a plain-HTTP client on the TLS port (it must use https:// and the cluster's CA); it sent %q", first))
		})
	}
	return n, err
}

// ExplainClientError says, for a client, what a TLS failure means and
// what to do; ok is false when err is not about TLS. addr is the server
// address, caFlag the name of the flag or setting holding the CA.
func ExplainClientError(err error, addr, caFlag string) (string, bool) {
	var (
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		he  x509.HostnameError
		rh  tls.RecordHeaderError
		cve *tls.CertificateVerificationError
	)
	if errors.As(err, &cve) && len(cve.UnverifiedCertificates) > 0 {
		// Keep the x509 error underneath for the cases below.
		err = cve.Err
	}
	switch {
	case errors.As(err, &ua):
		return fmt.Sprintf("the server's certificate is not signed by the CA in %s (server at %s)", caFlag, addr), true
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		if ci.Cert != nil && time.Now().After(ci.Cert.NotAfter) {
			return fmt.Sprintf("the server's certificate (%s) expired at %s (server at %s)", certNames(ci.Cert), ci.Cert.NotAfter.UTC().Format(time.RFC3339), addr), true
		}
		return fmt.Sprintf("the server's certificate is not valid now: %s (server at %s)", ci.Detail, addr), true
	case errors.As(err, &he):
		return fmt.Sprintf("the server's certificate is for %s, not %s (server at %s): set -tls-server-name to a name it carries", certNames(he.Certificate), he.Host, addr), true
	case errors.As(err, &rh):
		return fmt.Sprintf("the server at %s does not speak TLS: use http:// (it runs -dev or -insecure-no-tls)", addr), true
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("the server at %s does not speak TLS: use http:// (it runs -dev or -insecure-no-tls)", addr), true
	case strings.Contains(msg, "Client sent an HTTP request to an HTTPS server"):
		return fmt.Sprintf("server at %s speaks TLS; use https:// and -ca-cert", addr), true
	case strings.Contains(msg, "remote error: tls: certificate required"),
		strings.Contains(msg, "remote error: tls: handshake failure") && !strings.Contains(msg, "x509"):
		return fmt.Sprintf("the server at %s requires a client certificate: give -client-cert and -client-key (OUTPOST_CLIENT_CERT, OUTPOST_CLIENT_KEY)", addr), true
	case strings.Contains(msg, "remote error: tls: expired certificate"):
		return fmt.Sprintf("the server at %s refused the client certificate: it expired", addr), true
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: bad certificate"):
		return fmt.Sprintf("the server at %s refused the client certificate: it is not signed by the cluster's CA", addr), true
	case strings.Contains(msg, "tls: "):
		return fmt.Sprintf("TLS with the server at %s failed: %s", addr, msg), true
	}
	return "", false
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "?"
	}
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return c.Subject.CommonName
}

// SpeaksTLS reports whether addr (host:port) completes a TLS handshake,
// certificate unchecked: a plain client that cannot make sense of a
// server's answer asks it to tell "wrong scheme" from other failures.
func SpeaksTLS(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // a probe: nothing is sent
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		// A server that asked for a certificate and got none still spoke
		// TLS.
		return strings.Contains(err.Error(), "remote error: tls")
	}
	c.Close()
	return true
}
