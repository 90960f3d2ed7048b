package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// tlsTimeout bounds waits for a log line or a reload to show.
const tlsTimeout = 30 * time.Second

// hostPort is a server's API address without its scheme.
func hostPort(s *testcluster.Server) string {
	return net.JoinHostPort(s.Host(), strconv.Itoa(s.HTTPPort()))
}

// waitLog waits until the agent's log holds every one of parts on one line.
func waitLog(t *testing.T, p *testcluster.Process, parts ...string) {
	t.Helper()
	testcluster.WaitFor(t, tlsTimeout, func() (bool, string) {
		for _, line := range strings.Split(p.Logs(), "\n") {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(line, part)
			}
			if ok {
				return true, ""
			}
		}
		return false, "no log line with " + strings.Join(parts, " … ") + "; tail:\n" + p.Tail(10)
	})
}

// cliEnv runs the CLI with exactly env (no test CA unless given).
func cliEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	out, errOut, code := testcluster.RunCLI(t, testcluster.Binary(t), env, args...)
	return result{args: args, stdout: out, stderr: errOut, code: code}
}

// mustFail checks a command failed with want in its error.
func mustFail(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("want a failure saying %q; got %s", want, r)
	}
}

// A plain-HTTP client against the TLS port, and a TLS client against a
// plain one, each get a clear message, and the server logs the first.
func TestTLSPlainHTTPRefused(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{})
	r := cliEnv(t, []string{"OUTPOST_ADDR=http://" + hostPort(s)}, "job", "list")
	mustFail(t, r, "speaks TLS; use https:// and -ca-cert")
	waitLog(t, s.Process, "TLS handshake refused", "not TLS")

	// curl's way: HTTP/1.1, which Go's server answers with a 400.
	resp, err := http.Post("http://"+hostPort(s)+"/outpost.v1.AgentService/Status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTP request to an HTTPS server") {
		t.Errorf("plain POST: %d %s", resp.StatusCode, body)
	}

	plain := testcluster.StartServer(t, testcluster.ServerOptions{InsecureNoTLS: true})
	if !strings.Contains(plain.Logs(), "-insecure-no-tls") {
		t.Errorf("no warning about -insecure-no-tls in the log:\n%s", plain.Tail(20))
	}
	env := append([]string{"OUTPOST_ADDR=https://" + hostPort(plain)}, testcluster.ClientEnv(t)...)
	mustFail(t, cliEnv(t, env, "job", "list"), "does not speak TLS")
}

// A CA the server's certificate is not from, and a client certificate
// from another CA, are refused on both sides with the reason.
func TestTLSWrongCARefused(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{})
	other, err := tlsutil.NewPKI(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"OUTPOST_ADDR=" + s.Addr(), "OUTPOST_CACERT=" + other.CAFile, "OUTPOST_TLS_SERVER_NAME=" + testcluster.ServerName}
	mustFail(t, cliEnv(t, env, "job", "list"), "the server's certificate is not signed by the CA in -ca-cert")

	cert, key, err := other.Issue(tlsutil.RoleClient, "client", tlsutil.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ok := testcluster.ClientTLS(t)
	env = []string{"OUTPOST_ADDR=" + s.Addr(), "OUTPOST_CACERT=" + ok.CAFile, "OUTPOST_CLIENT_CERT=" + cert, "OUTPOST_CLIENT_KEY=" + key, "OUTPOST_TLS_SERVER_NAME=" + testcluster.ServerName}
	// The CLI checks its certificate against its CA before it dials.
	mustFail(t, cliEnv(t, env, "job", "list"), "is not signed by the CA in -ca-cert")
	// A client that does not check first is refused by the server,
	// which logs why.
	cfg := testcluster.ClientTLSConfig(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates, cfg.GetClientCertificate = nil, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", hostPort(s), cfg); err == nil {
		// TLS 1.3: the refusal arrives after the client's handshake ends.
		_, _ = c.Read(make([]byte, 1))
		c.Close()
	}
	waitLog(t, s.Process, "TLS handshake refused", "not signed by this agent's CA")
}

// copyTLS gives a server certificate files of its own, to replace.
func copyTLS(t *testing.T, from testcluster.TLSFiles) testcluster.TLSFiles {
	t.Helper()
	dir := t.TempDir()
	to := testcluster.TLSFiles{CAFile: from.CAFile, CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server-key.pem")}
	copyFile(t, from.CertFile, to.CertFile)
	copyFile(t, from.KeyFile, to.KeyFile)
	return to
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Through a rename, as a deploy tool swaps files.
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// serverSerial is the serial of the certificate a new connection sees.
func serverSerial(t *testing.T, s *testcluster.Server) (string, error) {
	t.Helper()
	cfg := testcluster.ClientTLSConfig(t)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", hostPort(s), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// SIGHUP swaps a server's certificate for new connections, without a
// restart; the CLI works across it.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	e2e(t)
	files := copyTLS(t, testcluster.ServerTLS(t))
	s := testcluster.StartServer(t, testcluster.ServerOptions{TLS: &files})
	before, err := serverSerial(t, s)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := testcluster.PKI(t).Issue(tlsutil.RoleServer, "rotated-"+strconv.FormatInt(time.Now().UnixNano(), 36), tlsutil.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, cert, files.CertFile)
	copyFile(t, key, files.KeyFile)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s.Process, "reloaded TLS certificates")
	after, err := serverSerial(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if after == before || !strings.Contains(s.Logs(), "serial="+after) {
		t.Errorf("serial %s before the reload, %s after; log:\n%s", before, after, s.Tail(10))
	}
	cliOK(t, s, "job", "list")
}

// Expired certificates are refused, saying expired and when: a client's
// by the CLI itself (and by the server, for clients that send one
// anyway), a server's by the client.
func TestTLSExpiredCertificates(t *testing.T) {
	e2e(t)
	files := copyTLS(t, testcluster.ServerTLS(t))
	s := testcluster.StartServer(t, testcluster.ServerOptions{TLS: &files})
	past := tlsutil.IssueOptions{Now: time.Now().Add(-72 * time.Hour), Days: 1}
	pki := testcluster.PKI(t)
	cert, key, err := pki.Issue(tlsutil.RoleClient, "expired-client-"+strconv.FormatInt(time.Now().UnixNano(), 36), past)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"OUTPOST_ADDR=" + s.Addr(), "OUTPOST_CACERT=" + pki.CAFile, "OUTPOST_CLIENT_CERT=" + cert, "OUTPOST_CLIENT_KEY=" + key, "OUTPOST_TLS_SERVER_NAME=" + testcluster.ServerName}
	mustFail(t, cliEnv(t, env, "job", "list"), "expired at ")

	// A client that sends it anyway.
	c, err := tls.X509KeyPair(mustRead(t, cert), mustRead(t, key))
	if err != nil {
		t.Fatal(err)
	}
	cfg := testcluster.ClientTLSConfig(t)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	jc := outpostv1connect.NewJobServiceClient(rpc.NewTLSHTTPClient(cfg), s.Addr())
	// (HTTP/2 reports only that the connection failed: TLS 1.3 ends
	// the client's handshake before the server's verdict.)
	if _, err := jc.ListJobs(t.Context(), connect.NewRequest(&pb.ListJobsRequest{})); err == nil {
		t.Error("an expired client certificate was taken")
	}
	waitLog(t, s.Process, "TLS handshake refused", "expired")

	scert, skey, err := pki.Issue(tlsutil.RoleServer, "expired-server-"+strconv.FormatInt(time.Now().UnixNano(), 36), past)
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, scert, files.CertFile)
	copyFile(t, skey, files.KeyFile)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitLog(t, s.Process, "reloaded TLS certificates")
	r := cli(t, s, "job", "list")
	mustFail(t, r, "the server's certificate (server.outpost")
	mustFail(t, r, "expired at ")
}

// roleClient is an HTTP client presenting the shared certificate of a
// role.
func roleClient(t *testing.T, f testcluster.TLSFiles) *http.Client {
	t.Helper()
	cfg, err := tlsutil.ClientConfig(f.CAFile, f.CertFile, f.KeyFile, testcluster.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	return rpc.NewTLSHTTPClient(cfg)
}

// The internal API takes only server certificates and the runner stream
// only runner (or server) ones; refusals are PermissionDenied and say
// what was needed and what came.
func TestTLSRoleGates(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cluster := func(f testcluster.TLSFiles) error {
		c := outpostv1connect.NewClusterServiceClient(roleClient(t, f), s.Addr())
		_, err := c.ReadIndex(ctx, connect.NewRequest(&pb.ReadIndexRequest{}))
		return err
	}
	for _, tc := range []struct {
		name  string
		files testcluster.TLSFiles
		seen  string
	}{
		{"runner", testcluster.RunnerTLS(t), "runner.outpost"},
		{"client", testcluster.ClientTLS(t), "client.outpost"},
		{"none", testcluster.TLSFiles{CAFile: testcluster.ClientTLS(t).CAFile}, "no client certificate"},
	} {
		err := cluster(tc.files)
		if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "a server certificate (server.outpost) is required") || !strings.Contains(err.Error(), tc.seen) {
			t.Errorf("ClusterService with a %s certificate: %v", tc.name, err)
		}
	}
	if err := cluster(testcluster.ServerTLS(t)); err != nil {
		t.Errorf("ClusterService with a server certificate: %v", err)
	}

	connectWith := func(f testcluster.TLSFiles) error {
		c := outpostv1connect.NewRunnerServiceClient(roleClient(t, f), s.Addr())
		stream := c.Connect(ctx)
		_ = stream.Send(&pb.RunnerMessage{})
		_, err := stream.Receive()
		_ = stream.CloseRequest()
		_ = stream.CloseResponse()
		return err
	}
	err := connectWith(testcluster.ClientTLS(t))
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "a runner certificate (runner.outpost) is required; the certificate presented is for client.outpost") {
		t.Errorf("RunnerService/Connect with a client certificate: %v", err)
	}
	// A runner's certificate passes the gate (the stream then wants a
	// Register first).
	if err := connectWith(testcluster.RunnerTLS(t)); connect.CodeOf(err) == connect.CodePermissionDenied {
		t.Errorf("RunnerService/Connect with a runner certificate: %v", err)
	}
	// The rest of RunnerService is the public API.
	rc := outpostv1connect.NewRunnerServiceClient(roleClient(t, testcluster.ClientTLS(t)), s.Addr())
	list := connect.NewRequest(&pb.ListRunnersRequest{})
	list.Header().Set(rpc.TokenHeader, s.Token()) // and ACL tokens gate it
	if _, err := rc.ListRunners(ctx, list); err != nil {
		t.Errorf("ListRunners with a client certificate: %v", err)
	}

	// And a runner agent with a client certificate is refused for good.
	r := testcluster.StartRunner(t, testcluster.RunnerOptions{Servers: []string{s.Addr()}, TLS: ptr(testcluster.ClientTLS(t))})
	waitLog(t, r.Process, "runner certificate (runner.outpost) is required")
}

func ptr[T any](v T) *T { return &v }

// The Raft port takes only servers: a runner's certificate, valid and of
// the cluster's CA, is refused at the handshake and logged.
func TestTLSRaftRefusesNonServer(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{})
	raftAddr := net.JoinHostPort(s.Host(), strconv.Itoa(s.RaftPort()))
	dial := func(f testcluster.TLSFiles) error {
		cfg, err := tlsutil.ClientConfig(f.CAFile, f.CertFile, f.KeyFile, testcluster.ServerName)
		if err != nil {
			return err
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3 finishes the client's side before the server has
		// checked the client's certificate: its verdict comes with the
		// first read.
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{0}); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1))
		return err
	}
	err := dial(testcluster.RunnerTLS(t))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() || !strings.Contains(err.Error(), "tls") {
		t.Errorf("Raft port with a runner certificate: %v; want a TLS alert", err)
	}
	waitLog(t, s.Process, "raft-net", "TLS handshake refused", "runner.outpost")
	if err := dial(testcluster.TLSFiles{CAFile: testcluster.ServerTLS(t).CAFile}); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("Raft port without a certificate: %v", err)
	}
}
