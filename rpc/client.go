package rpc

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// DefaultAddress is where clients look for a server when told nothing.
const DefaultAddress = "http://127.0.0.1:7700"

// Client is a typed client for a cluster, reached through one or more
// server addresses.
type Client struct {
	// Address is the first address; Addresses all of them.
	Address   string
	Addresses []string
	HTTP      *http.Client
	Jobs      outpostv1connect.JobServiceClient
	Runners   outpostv1connect.RunnerServiceClient
	Agent     outpostv1connect.AgentServiceClient
	Operator  outpostv1connect.OperatorServiceClient
	Projects  outpostv1connect.ProjectServiceClient
	Keyring   outpostv1connect.KeyringServiceClient
	ACL       outpostv1connect.ACLServiceClient
	// Token is the ACL token sent with every call ("" for none).
	Token string
}

// NormalizeAddress accepts "host:port", "http://host:port" or
// "https://host:port" and returns a base URL; without a scheme, http.
func NormalizeAddress(addr string) (string, error) { return NormalizeAddressScheme(addr, "http") }

// NormalizeAddressScheme is NormalizeAddress with the scheme an address
// without one gets: https when the client has a CA to verify with.
func NormalizeAddressScheme(addr, scheme string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		addr = DefaultAddress
		if scheme == "https" {
			addr = "https://" + strings.TrimPrefix(addr, "http://")
		}
	}
	if !strings.Contains(addr, "://") {
		addr = scheme + "://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("address %q: no host", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

// ParseAddresses splits a comma-separated list of server addresses.
func ParseAddresses(list string) ([]string, error) { return ParseAddressesScheme(list, "http") }

// ParseAddressesScheme is ParseAddresses with NormalizeAddressScheme's
// default scheme.
func ParseAddressesScheme(list, scheme string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(list, ",") {
		if strings.TrimSpace(a) == "" && len(out) > 0 {
			continue
		}
		n, err := NormalizeAddressScheme(a, scheme)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// A connection that has received nothing for h2PingAfter is pinged, and
// closed if no answer comes within h2PingTimeout. Runner streams carry a
// heartbeat acknowledgement at least every 2 s, so they are rarely pinged.
const (
	h2PingAfter   = 3 * time.Second
	h2PingTimeout = 2 * time.Second
)

// NewHTTPClient returns an HTTP client that speaks HTTP/2 without TLS to
// http:// addresses, which the runner stream needs (it is bidirectional).
func NewHTTPClient() *http.Client { return NewTLSHTTPClient(nil) }

// NewTLSHTTPClient is NewHTTPClient that also reaches https:// addresses
// with cfg: HTTP/2 negotiated by ALPN, with the same pings.
func NewTLSHTTPClient(cfg *tls.Config) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	// Without HTTP1 in the set, http:// requests use HTTP/2 with prior
	// knowledge (h2c) instead of HTTP/1.1.
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.TLSClientConfig = cfg
	// A connection whose packets were dropped for a while (a partition, a
	// frozen peer) stays open but useless: TCP's retransmission timer has
	// backed off to seconds, and every request multiplexed onto it waits
	// for the next retransmission. The chaos test saw a server's relay to
	// its leader and a runner's register fail for 9 s after a partition
	// healed. Pinging a silent connection and closing it when the ping goes
	// unanswered makes the next request dial afresh.
	tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: h2PingAfter, PingTimeout: h2PingTimeout}
	return &http.Client{Transport: tr}
}

// NewClient returns a client for the servers in addrs, a comma-separated
// list. With several, a request that cannot reach one server is sent to the
// next, and the client stays with the one that answered.
//
// Options: WithToken sends an ACL token on every call.
func NewClient(addrs string, hc *http.Client, opts ...ClientOption) (*Client, error) {
	return NewClientTLS(addrs, hc, nil, opts...)
}

// NewClientTLS is NewClient over TLS with cfg (nil: none): addresses
// without a scheme are https, and hc, when nil, verifies with cfg.
func NewClientTLS(addrs string, hc *http.Client, cfg *tls.Config, opts ...ClientOption) (*Client, error) {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	scheme := "http"
	if cfg != nil {
		scheme = "https"
	}
	list, err := ParseAddressesScheme(addrs, scheme)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = NewTLSHTTPClient(cfg)
	}
	base := list[0]
	if len(list) > 1 {
		hc = &http.Client{Transport: &failover{next: hc.Transport, addrs: list}, Timeout: hc.Timeout}
	}
	opt := connect.WithInterceptors(UnavailableOnReset(), tokenInterceptor(o.token))
	return &Client{
		Address:   base,
		Token:     o.token,
		Addresses: list,
		HTTP:      hc,
		Jobs:      outpostv1connect.NewJobServiceClient(hc, base, opt),
		Runners:   outpostv1connect.NewRunnerServiceClient(hc, base, opt),
		Agent:     outpostv1connect.NewAgentServiceClient(hc, base, opt),
		Operator:  outpostv1connect.NewOperatorServiceClient(hc, base, opt),
		Projects:  outpostv1connect.NewProjectServiceClient(hc, base, opt),
		ACL:       outpostv1connect.NewACLServiceClient(hc, base, opt),
		Keyring:   outpostv1connect.NewKeyringServiceClient(hc, base, opt),
	}, nil
}

// maxReplayBody bounds the request body failover keeps for a resend.
const maxReplayBody = 8 << 20

// failover sends each request to the current server and, when the
// connection cannot be made, to the next. Only connection failures move on:
// a request that reached a server is never sent twice by this layer.
type failover struct {
	next  http.RoundTripper
	addrs []string

	mu      sync.Mutex
	current int
}

func (f *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(b) > maxReplayBody {
			return nil, fmt.Errorf("request body over %d bytes", maxReplayBody)
		}
		body = b
	}
	f.mu.Lock()
	start := f.current
	f.mu.Unlock()
	var lastErr error
	for i := range f.addrs {
		idx := (start + i) % len(f.addrs)
		u, _ := url.Parse(f.addrs[idx])
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, ""
		if body != nil {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		resp, err := f.next.RoundTrip(r)
		if err == nil {
			f.mu.Lock()
			f.current = idx
			f.mu.Unlock()
			return resp, nil
		}
		lastErr = err
		if !unreachable(err) || req.Context().Err() != nil {
			return nil, err
		}
	}
	return nil, lastErr
}

// unreachable reports whether err means the request never reached a server.
func unreachable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscallECONNREFUSED)
}
