package rpc

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// DefaultAddress is where clients look for a server when told nothing.
const DefaultAddress = "http://127.0.0.1:7700"

// Client is a typed client for one server.
type Client struct {
	Address string
	Jobs    outpostv1connect.JobServiceClient
	Runners outpostv1connect.RunnerServiceClient
	Agent   outpostv1connect.AgentServiceClient
}

// NormalizeAddress accepts "host:port", "http://host:port" or
// "https://host:port" and returns a base URL.
func NormalizeAddress(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return DefaultAddress, nil
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
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

// NewHTTPClient returns an HTTP client that speaks HTTP/2 without TLS to
// http:// addresses, which the runner stream needs (it is bidirectional).
func NewHTTPClient() *http.Client {
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
	return &http.Client{Transport: tr}
}

// NewClient returns a client for the server at addr.
func NewClient(addr string, hc *http.Client) (*Client, error) {
	base, err := NormalizeAddress(addr)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = NewHTTPClient()
	}
	return &Client{
		Address: base,
		Jobs:    outpostv1connect.NewJobServiceClient(hc, base),
		Runners: outpostv1connect.NewRunnerServiceClient(hc, base),
		Agent:   outpostv1connect.NewAgentServiceClient(hc, base),
	}, nil
}
