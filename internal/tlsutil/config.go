package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// Config is an agent's `tls { }` block, or a client's flags.
type Config struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// VerifyIncoming requires a certificate from every client of the
	// HTTP port; without it one is asked for and verified when given.
	VerifyIncoming bool
	// VerifyServerHostname makes a runner check that its server's
	// certificate carries server.<domain> (servers always check each
	// other's).
	VerifyServerHostname bool
	// MinVersion is "tls12" or "tls13" (the default).
	MinVersion string
	Domain     string
}

// ParseMinVersion reads min_version.
func ParseMinVersion(s string) (uint16, error) {
	switch s {
	case "", "tls13":
		return tls.VersionTLS13, nil
	case "tls12":
		return tls.VersionTLS12, nil
	}
	return 0, fmt.Errorf("min_version %q: use \"tls12\" or \"tls13\"", s)
}

// cipherSuites are the TLS 1.2 suites allowed: AEADs with forward secrecy
// only (AES-GCM and ChaCha20-Poly1305). TLS 1.3's are all of that kind
// and not configurable.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CipherSuites returns the TLS 1.2 suites outpost accepts.
func CipherSuites() []uint16 { return slices.Clone(cipherSuites) }

// material is one generation of loaded files; Reload swaps it whole.
type material struct {
	pool *x509.CertPool
	cert *tls.Certificate
}

// Configurator builds the TLS configurations of an agent from its
// certificate files. Every configuration it returns reads the current
// files through callbacks, so Reload changes what new connections use
// without rebuilding listeners or clients.
type Configurator struct {
	cfg        Config
	minVersion uint16
	cur        atomic.Pointer[material]
}

// NewConfigurator loads cfg's files. All three are required: every role
// both presents a certificate and verifies its peer's.
func NewConfigurator(cfg Config) (*Configurator, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	v, err := ParseMinVersion(cfg.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	c := &Configurator{cfg: cfg, minVersion: v}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Domain is the domain role names are checked in.
func (c *Configurator) Domain() string { return c.cfg.Domain }

// Reload rereads the CA, certificate and key files. On error the files in
// use stay in use; connections already open are not touched.
func (c *Configurator) Reload() error {
	m, err := load(c.cfg)
	if err != nil {
		return err
	}
	c.cur.Store(m)
	return nil
}

// Certificate is the certificate in use, parsed.
func (c *Configurator) Certificate() *x509.Certificate { return c.cur.Load().cert.Leaf }

func load(cfg Config) (*material, error) {
	switch {
	case cfg.CAFile == "":
		return nil, errors.New("tls: ca_file is required")
	case cfg.CertFile == "" || cfg.KeyFile == "":
		return nil, errors.New("tls: cert_file and key_file are required")
	}
	pool, err := LoadCAFile(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	// tls.LoadX509KeyPair fills Leaf since Go 1.23.
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: parse %s: %w", cfg.CertFile, err)
		}
	}
	return &material{pool: pool, cert: &cert}, nil
}

// LoadCAFile reads a PEM file of one or more CA certificates.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// base is what every configuration shares.
func (c *Configurator) base() *tls.Config {
	return &tls.Config{MinVersion: c.minVersion, CipherSuites: CipherSuites()}
}

// HTTPNextProtos is what the HTTP port offers in ALPN: HTTP/2 for runners'
// streams and the CLI, HTTP/1.1 for curl and browsers.
var HTTPNextProtos = []string{"h2", "http/1.1"}

// IncomingHTTP is the HTTP port's configuration: every client is asked
// for a certificate, one given must verify against the CA, and with
// verify_incoming one is required. Which role it proves is the handlers'
// business (PeerRoleHandler).
func (c *Configurator) IncomingHTTP() *tls.Config {
	auth := tls.VerifyClientCertIfGiven
	if c.cfg.VerifyIncoming {
		auth = tls.RequireAndVerifyClientCert
	}
	return c.incoming(auth, HTTPNextProtos, nil)
}

// IncomingRaft is the Raft port's configuration: only servers, proven by
// a server.<domain> certificate, may connect.
func (c *Configurator) IncomingRaft() *tls.Config {
	return c.incoming(tls.RequireAndVerifyClientCert, nil, func(cs tls.ConnectionState) error {
		return CheckRole(&cs, RoleServer, c.cfg.Domain)
	})
}

func (c *Configurator) incoming(auth tls.ClientAuthType, protos []string, verify func(tls.ConnectionState) error) *tls.Config {
	outer := c.base()
	outer.NextProtos = protos
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := c.cur.Load()
		t := c.base()
		t.Certificates = []tls.Certificate{*m.cert}
		t.ClientCAs = m.pool
		t.ClientAuth = auth
		t.NextProtos = protos
		t.VerifyConnection = verify
		return t, nil
	}
	return outer
}

// OutgoingServer is a server's configuration for dialing another server
// (Raft, forwarding, relays): it presents this server's certificate and
// requires the peer's to carry server.<domain>, whatever address it was
// reached at.
func (c *Configurator) OutgoingServer() *tls.Config {
	return c.outgoing(RoleServer.Name(c.cfg.Domain))
}

// OutgoingRunner is a runner's configuration for its servers: it
// presents the runner's certificate and, with verify_server_hostname,
// requires server.<domain> in the server's.
func (c *Configurator) OutgoingRunner() *tls.Config {
	name := ""
	if c.cfg.VerifyServerHostname {
		name = RoleServer.Name(c.cfg.Domain)
	}
	return c.outgoing(name)
}

// outgoing verifies the peer itself, against the CA loaded now, rather
// than through RootCAs: a tls.Config in an http.Transport cannot be
// changed safely once in use, and Reload must reach new connections.
func (c *Configurator) outgoing(name string) *tls.Config {
	t := c.base()
	t.InsecureSkipVerify = true // verified in VerifyConnection below
	t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return c.cur.Load().cert, nil
	}
	t.VerifyConnection = func(cs tls.ConnectionState) error {
		return VerifyServer(cs, c.cur.Load().pool, name)
	}
	return t
}

// VerifyServer checks a server's certificate chain against pool and, when
// name is not empty, that the certificate carries name. Its errors are
// crypto/x509's, which ExplainClientError turns into advice.
func VerifyServer(cs tls.ConnectionState, pool *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       name,
		CurrentTime:   time.Now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// ClientConfig is the CLI's configuration from -ca-cert, -client-cert,
// -client-key and -tls-server-name: standard verification of the server
// against the CA, by serverName when given (else by the address's host).
func ClientConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: CipherSuites(), ServerName: serverName}
	if caFile != "" {
		pool, err := LoadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		t.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load client certificate: %w", err)
		}
		// Said here, with the date: the server would only answer
		// "expired certificate".
		if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
			return nil, fmt.Errorf("tls: the client certificate %s expired at %s: make a new one with `outpost tls cert create -client`",
				certFile, cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		// One CA signs every certificate of a cluster, so a client
		// certificate the CA does not verify is refused by every server.
		// Said here: under TLS 1.3 the server refuses it after the
		// client's side of the handshake, and the client then often sees
		// only a reset connection.
		if t.RootCAs != nil && cert.Leaf != nil {
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: t.RootCAs, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				return nil, fmt.Errorf("tls: the client certificate %s is not signed by the CA in -ca-cert (%s), so no server of the cluster accepts it: %w", certFile, caFile, err)
			}
		}
		// Always sent: Go's default sends none when the certificate is not
		// from a CA the server names, and the client would then go on
		// as anonymous instead of hearing why its certificate is refused.
		t.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	case certFile != "" || keyFile != "":
		return nil, errors.New("tls: give both -client-cert and -client-key")
	}
	return t, nil
}
