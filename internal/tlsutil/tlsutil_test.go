package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGenerateCertNames(t *testing.T) {
	ca, caKey, err := GenerateCA(CAOptions{Domain: "corp"})
	if err != nil {
		t.Fatal(err)
	}
	caCert := parseCert(t, ca)
	if !caCert.IsCA || caCert.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA: IsCA %v, algorithm %v", caCert.IsCA, caCert.PublicKeyAlgorithm)
	}
	cases := []struct {
		role  Role
		extra []string
		ips   []net.IP
		dns   []string
		wantI []string
	}{
		{role: RoleServer, dns: []string{"server.corp", "localhost"}, wantI: []string{"127.0.0.1"}},
		{role: RoleServer, extra: []string{"s1.example"}, ips: []net.IP{net.ParseIP("10.0.0.5")}, dns: []string{"server.corp", "localhost", "s1.example"}, wantI: []string{"127.0.0.1", "10.0.0.5"}},
		{role: RoleRunner, dns: []string{"runner.corp"}},
		{role: RoleClient, dns: []string{"client.corp"}},
	}
	for _, tc := range cases {
		t.Run(string(tc.role), func(t *testing.T) {
			certPEM, keyPEM, err := GenerateCert(CertOptions{CACert: ca, CAKey: caKey, Role: tc.role, Domain: "corp", DNSNames: tc.extra, IPs: tc.ips})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
			c := parseCert(t, certPEM)
			if !slices.Equal(c.DNSNames, tc.dns) {
				t.Errorf("DNS names %v, want %v", c.DNSNames, tc.dns)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantI) {
				t.Errorf("IPs %v, want %v", ips, tc.wantI)
			}
			pool := x509.NewCertPool()
			pool.AddCert(caCert)
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.role.Name("corp"), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("does not verify as %s: %v", tc.role.Name("corp"), err)
			}
		})
	}
	if _, _, err := GenerateCert(CertOptions{CACert: ca, CAKey: caKey, Role: "admin"}); err == nil || !strings.Contains(err.Error(), `role "admin"`) {
		t.Errorf("unknown role: %v", err)
	}
	_, otherKey, _ := GenerateCA(CAOptions{})
	if _, _, err := GenerateCert(CertOptions{CACert: ca, CAKey: otherKey, Role: RoleServer}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched CA key: %v", err)
	}
}

func TestParseMinVersion(t *testing.T) {
	for in, want := range map[string]uint16{"": tls.VersionTLS13, "tls13": tls.VersionTLS13, "tls12": tls.VersionTLS12} {
		if got, err := ParseMinVersion(in); err != nil || got != want {
			t.Errorf("%q: %x %v, want %x", in, got, err, want)
		}
	}
	for _, bad := range []string{"tls11", "TLS1.2", "1.3"} {
		if _, err := ParseMinVersion(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// testPKI makes a CA and a server, runner and client certificate.
func testPKI(t *testing.T) (*PKI, map[Role]Config) {
	t.Helper()
	p, err := NewPKI(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	cfgs := map[Role]Config{}
	for _, r := range Roles {
		c, k, err := p.Issue(r, string(r), IssueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfgs[r] = p.Config(c, k)
	}
	return p, cfgs
}

func configurator(t *testing.T, c Config) *Configurator {
	t.Helper()
	tc, err := NewConfigurator(c)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// serveHTTP serves the role each client proves, over TLS with tc.
func serveHTTP(t *testing.T, tc *Configurator) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(PeerRoleHandler(tc.Domain(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, string(PeerRole(r.Context()))+" "+r.Proto)
	})))
	srv.TLS = tc.IncomingHTTP()
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func get(t *testing.T, client *tls.Config, url string) (string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: client, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

// The HTTP port tells the roles apart, over HTTP/2, and takes a client
// without a certificate unless verify_incoming.
func TestIncomingHTTPRoles(t *testing.T) {
	p, cfgs := testPKI(t)
	url := serveHTTP(t, configurator(t, cfgs[RoleServer]))
	for _, r := range Roles {
		got, err := get(t, configurator(t, cfgs[r]).OutgoingServer(), url)
		if err != nil || got != string(r)+" HTTP/2.0" {
			t.Errorf("%s: %q %v", r, got, err)
		}
	}
	anon, err := ClientConfig(p.CAFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := get(t, anon, url); err != nil || got != " HTTP/2.0" {
		t.Errorf("no certificate: %q %v", got, err)
	}
	strict := cfgs[RoleServer]
	strict.VerifyIncoming = true
	url = serveHTTP(t, configurator(t, strict))
	if _, err := get(t, anon, url); err == nil {
		t.Error("verify_incoming took a client without a certificate")
	}
}

func TestCheckRole(t *testing.T) {
	_, cfgs := testPKI(t)
	runner := configurator(t, cfgs[RoleRunner]).Certificate()
	cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{runner}, VerifiedChains: [][]*x509.Certificate{{runner}}}
	if err := CheckRole(cs, RoleRunner, DefaultDomain); err != nil {
		t.Error(err)
	}
	err := CheckRole(cs, RoleServer, DefaultDomain)
	if err == nil || err.Error() != "a server certificate (server.outpost) is required; the certificate presented is for runner.outpost" {
		t.Errorf("runner as server: %v", err)
	}
	if err := CheckRole(cs, RoleRunner, "corp"); err == nil {
		t.Error("a runner.outpost certificate passed as runner.corp")
	}
	if err := CheckRole(&tls.ConnectionState{}, RoleServer, DefaultDomain); err == nil || !strings.Contains(err.Error(), "no client certificate") {
		t.Errorf("none: %v", err)
	}
	if err := CheckRole(nil, RoleServer, DefaultDomain); err == nil || !strings.Contains(err.Error(), "not TLS") {
		t.Errorf("plain: %v", err)
	}
}

// Raft's incoming side takes only server certificates.
func TestIncomingRaftOnlyServers(t *testing.T) {
	_, cfgs := testPKI(t)
	srv := configurator(t, cfgs[RoleServer])
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.IncomingRaft())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	for _, r := range Roles {
		c, err := tls.Dial("tcp", ln.Addr().String(), configurator(t, cfgs[r]).OutgoingServer())
		if err == nil {
			buf := make([]byte, 2)
			_, err = io.ReadFull(c, buf)
			c.Close()
		}
		if (err == nil) != (r == RoleServer) {
			t.Errorf("%s: %v", r, err)
		}
	}
}

// A dialer checks server.<domain> and the CA; errors explain.
func TestOutgoingVerifiesServer(t *testing.T) {
	_, cfgs := testPKI(t)
	url := serveHTTP(t, configurator(t, cfgs[RoleRunner]))
	_, err := get(t, configurator(t, cfgs[RoleServer]).OutgoingServer(), url)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("a runner's certificate as a server's: %v", err)
	}
	if msg, ok := ExplainClientError(err, "x", "-ca-cert"); !ok || !strings.Contains(msg, "is for runner.outpost, not server.outpost") {
		t.Errorf("explained as %q", msg)
	}
	_, other := testPKI(t)
	url = serveHTTP(t, configurator(t, other[RoleServer]))
	_, err = get(t, configurator(t, cfgs[RoleServer]).OutgoingServer(), url)
	if msg, ok := ExplainClientError(err, "x", "-ca-cert"); !ok || !strings.Contains(msg, "not signed by the CA in -ca-cert") {
		t.Errorf("another CA: %v, explained as %q", err, msg)
	}
}

// Reload swaps the certificate for new connections, and a failed one
// keeps the old.
func TestReload(t *testing.T) {
	p, cfgs := testPKI(t)
	cfg := cfgs[RoleServer]
	tc := configurator(t, cfg)
	url := serveHTTP(t, tc)
	serial := func() string {
		t.Helper()
		var seen string
		cc := configurator(t, cfgs[RoleClient]).OutgoingServer()
		verify := cc.VerifyConnection
		cc.VerifyConnection = func(cs tls.ConnectionState) error {
			seen = cs.PeerCertificates[0].SerialNumber.String()
			return verify(cs)
		}
		if _, err := get(t, cc, url); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	before := serial()
	newCert, newKey, err := p.Issue(RoleServer, "server-2", IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range [][2]string{{newCert, cfg.CertFile}, {newKey, cfg.KeyFile}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := tc.Reload(); err != nil {
		t.Fatal(err)
	}
	after := serial()
	if before == after || after != tc.Certificate().SerialNumber.String() {
		t.Errorf("serial %s before, %s after reload", before, after)
	}
	if err := os.WriteFile(cfg.KeyFile, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tc.Reload(); err == nil {
		t.Error("reload of a broken key succeeded")
	}
	if serial() != after {
		t.Error("a failed reload changed the certificate")
	}
}

// min_version tls13 refuses a TLS 1.2 client; tls12 takes it, with an
// AEAD suite.
func TestMinVersion(t *testing.T) {
	_, cfgs := testPKI(t)
	for _, tc := range []struct {
		min string
		ok  bool
	}{{"tls13", false}, {"tls12", true}} {
		c := cfgs[RoleServer]
		c.MinVersion = tc.min
		url := serveHTTP(t, configurator(t, c))
		client := configurator(t, cfgs[RoleClient]).OutgoingServer()
		client.MaxVersion = tls.VersionTLS12
		client.MinVersion = tls.VersionTLS12
		_, err := get(t, client, url)
		if (err == nil) != tc.ok {
			t.Errorf("min_version %s, TLS 1.2 client: %v", tc.min, err)
		}
	}
	for _, s := range CipherSuites() {
		name := tls.CipherSuiteName(s)
		if !strings.Contains(name, "GCM") && !strings.Contains(name, "CHACHA20") {
			t.Errorf("suite %s is not AES-GCM or ChaCha20", name)
		}
	}
}

func TestExplainHandshake(t *testing.T) {
	for in, want := range map[string]string{
		"tls: failed to verify certificate: x509: certificate signed by unknown authority":                                      "not signed by this agent's CA",
		"remote error: tls: unknown certificate authority":                                                                      "does not trust this agent's certificate",
		"tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026 is after 2025": "expired",
		"tls: client didn't provide a certificate":                                                                              "no client certificate",
		"tls: first record does not look like a TLS handshake":                                                                  "not TLS",
	} {
		if got := ExplainHandshake(in); !strings.Contains(got, want) {
			t.Errorf("%q: %q, want it to say %q", in, got, want)
		}
	}
}

// SpeaksTLS tells a TLS port from a plain one.
func TestSpeaksTLS(t *testing.T) {
	_, cfgs := testPKI(t)
	url := serveHTTP(t, configurator(t, cfgs[RoleServer]))
	if !SpeaksTLS(context.Background(), strings.TrimPrefix(url, "https://")) {
		t.Error("TLS port not recognized")
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	if SpeaksTLS(context.Background(), strings.TrimPrefix(plain.URL, "http://")) {
		t.Error("plain port taken for TLS")
	}
}
