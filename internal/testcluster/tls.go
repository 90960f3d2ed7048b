package testcluster

import (
	"crypto/tls"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/outpost-run/outpost/internal/tlsutil"
)

// Every non-dev agent a test starts runs with TLS, as production does:
// one CA per test binary, made in-process with internal/tlsutil (the
// code behind `outpost tls`), and one certificate per role that every
// server, runner and client of the binary's clusters shares. Servers are
// verified by their role name (server.outpost), not their address, so
// servers in network namespaces (internal/chaos) need no IP names.
type testPKI struct {
	pki                   *tlsutil.PKI
	serverCert, serverKey string
	runnerCert, runnerKey string
	clientCert, clientKey string
	clientTLS             *tls.Config
}

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

// sharedPKI returns the binary's CA and role certificates, made on first
// use in a directory of their own (a test's TempDir would vanish with
// that test).
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-test-pki-")
		if err != nil {
			pkiErr = err
			return
		}
		p := &testPKI{}
		if p.pki, err = tlsutil.NewPKI(dir, tlsutil.DefaultDomain); err != nil {
			pkiErr = err
			return
		}
		for _, c := range []struct {
			role      tlsutil.Role
			cert, key *string
		}{
			{tlsutil.RoleServer, &p.serverCert, &p.serverKey},
			{tlsutil.RoleRunner, &p.runnerCert, &p.runnerKey},
			{tlsutil.RoleClient, &p.clientCert, &p.clientKey},
		} {
			if *c.cert, *c.key, err = p.pki.Issue(c.role, string(c.role), tlsutil.IssueOptions{}); err != nil {
				pkiErr = err
				return
			}
		}
		if p.clientTLS, err = tlsutil.ClientConfig(p.pki.CAFile, p.clientCert, p.clientKey, ServerName); err != nil {
			pkiErr = err
			return
		}
		pkiVal = p
	})
	if pkiErr != nil {
		t.Fatalf("testcluster: making the test CA: %v", pkiErr)
	}
	return pkiVal
}

// ServerName is the name every test server's certificate carries and
// clients verify: server.<domain>.
var ServerName = tlsutil.RoleServer.Name(tlsutil.DefaultDomain)

// PKI returns the test binary's CA, for tests that issue certificates of
// their own (expired ones, say) that its agents trust.
func PKI(t testing.TB) *tlsutil.PKI { return sharedPKI(t).pki }

// TLSFiles are the certificate files an agent is started with.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

// Args are the agent flags for f: -ca-file, -cert-file, -key-file.
func (f TLSFiles) Args() []string {
	return []string{"-ca-file=" + f.CAFile, "-cert-file=" + f.CertFile, "-key-file=" + f.KeyFile}
}

// ServerTLS is the shared server certificate's files.
func ServerTLS(t testing.TB) TLSFiles {
	p := sharedPKI(t)
	return TLSFiles{p.pki.CAFile, p.serverCert, p.serverKey}
}

// RunnerTLS is the shared runner certificate's files.
func RunnerTLS(t testing.TB) TLSFiles {
	p := sharedPKI(t)
	return TLSFiles{p.pki.CAFile, p.runnerCert, p.runnerKey}
}

// ClientTLS is the shared client certificate's files.
func ClientTLS(t testing.TB) TLSFiles {
	p := sharedPKI(t)
	return TLSFiles{p.pki.CAFile, p.clientCert, p.clientKey}
}

// ClientEnv is the CLI environment for the test CA and client
// certificate.
func ClientEnv(t testing.TB) []string {
	f := ClientTLS(t)
	return []string{
		"OUTPOST_CACERT=" + f.CAFile,
		"OUTPOST_CLIENT_CERT=" + f.CertFile,
		"OUTPOST_CLIENT_KEY=" + f.KeyFile,
		"OUTPOST_TLS_SERVER_NAME=" + ServerName,
	}
}

// ClientTLSConfig is the TLS configuration of test clients: the test CA,
// the client certificate, servers verified as ServerName.
func ClientTLSConfig(t testing.TB) *tls.Config { return sharedPKI(t).clientTLS.Clone() }

// HTTPClient is a plain HTTP client, as curl is (HTTP/1.1 unless HTTP/2
// is negotiated), that trusts the test CA and presents the client
// certificate: for tests that post raw requests.
func HTTPClient(t testing.TB) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: ClientTLSConfig(t)}}
}

// RunnerTLSConfig is the TLS configuration of a runner run in the test
// process (runner.Config.HTTPClient): the shared runner certificate,
// servers verified as ServerName.
func RunnerTLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	f := RunnerTLS(t)
	cfg, err := tlsutil.ClientConfig(f.CAFile, f.CertFile, f.KeyFile, ServerName)
	if err != nil {
		t.Fatalf("testcluster: runner TLS: %v", err)
	}
	return cfg
}
