package command

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mitchellh/cli"

	"github.com/outpost-run/outpost/internal/tlsutil"
)

func testMeta() (*Meta, *cli.MockUi, *bytes.Buffer) {
	ui := cli.NewMockUi()
	var out bytes.Buffer
	return &Meta{UI: ui, Stdout: &out, Stderr: &out}, ui, &out
}

// `tls ca create` and `tls cert create` write the files `consul tls`
// does, numbered, with private keys 0600, and never overwrite.
func TestTLSCreateCommands(t *testing.T) {
	dir := t.TempDir()
	m, ui, _ := testMeta()
	ca := &TLSCACreateCommand{Meta: m}
	if code := ca.Run([]string{"-out", dir, "-domain", "corp"}); code != exitOK {
		t.Fatalf("ca create: %d %s", code, ui.ErrorWriter.String())
	}
	if code := ca.Run([]string{"-out", dir, "-domain", "corp"}); code != exitError || !strings.Contains(ui.ErrorWriter.String(), "already exists") {
		t.Errorf("second ca create: %d %s", code, ui.ErrorWriter.String())
	}
	caFile, caKey := filepath.Join(dir, "corp-agent-ca.pem"), filepath.Join(dir, "corp-agent-ca-key.pem")
	cases := []struct {
		args []string
		code int
		file string
		name string
		err  string
	}{
		{args: []string{"-server"}, code: exitOK, file: "corp-server-0", name: "server.corp"},
		{args: []string{"-server", "-additional-dnsname", "s.example", "-additional-ipaddress", "10.0.0.1"}, code: exitOK, file: "corp-server-1", name: "s.example"},
		{args: []string{"-runner"}, code: exitOK, file: "corp-runner-0", name: "runner.corp"},
		{args: []string{"-client"}, code: exitOK, file: "corp-client-0", name: "client.corp"},
		{args: nil, code: exitUsage, err: "exactly one of -server, -runner or -client"},
		{args: []string{"-server", "-runner"}, code: exitUsage, err: "exactly one of"},
		{args: []string{"-server", "-additional-ipaddress", "nope"}, code: exitUsage, err: `"nope" is not an IP address`},
	}
	for _, tc := range cases {
		m, ui, _ := testMeta()
		args := append([]string{"-out", dir, "-domain", "corp", "-ca", caFile, "-key", caKey}, tc.args...)
		code := (&TLSCertCreateCommand{Meta: m}).Run(args)
		if code != tc.code || !strings.Contains(ui.ErrorWriter.String(), tc.err) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, ui.ErrorWriter.String(), tc.code, tc.err)
			continue
		}
		if tc.file == "" {
			continue
		}
		certFile, keyFile := filepath.Join(dir, tc.file+".pem"), filepath.Join(dir, tc.file+"-key.pem")
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		if err := pair.Leaf.VerifyHostname(tc.name); err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
		if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", keyFile, st.Mode().Perm())
		}
	}
	if st, _ := os.Stat(caKey); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode %v", st.Mode().Perm())
	}
	m, ui, _ = testMeta()
	if code := (&TLSCertCreateCommand{Meta: m}).Run([]string{"-server", "-out", dir, "-ca", filepath.Join(dir, "none.pem")}); code != exitError || !strings.Contains(ui.ErrorWriter.String(), "outpost tls ca create") {
		t.Errorf("missing CA: %d %s", code, ui.ErrorWriter.String())
	}
}

// The client's TLS flags fall back to their variables; none gives no TLS.
func TestClientTLSFlags(t *testing.T) {
	p, err := tlsutil.NewPKI(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := p.Issue(tlsutil.RoleClient, "c", tlsutil.IssueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if c, err := (tlsFlags{}).config(getenv); c != nil || err != nil {
		t.Errorf("nothing given: %v %v", c, err)
	}
	env["OUTPOST_CACERT"] = p.CAFile
	env["OUTPOST_TLS_SERVER_NAME"] = "env.name"
	c, err := (tlsFlags{serverName: "flag.name"}).config(getenv)
	if err != nil || c.RootCAs == nil || c.ServerName != "flag.name" || c.GetClientCertificate != nil {
		t.Errorf("CA from env, name from flag: %+v %v", c, err)
	}
	env["OUTPOST_CLIENT_CERT"], env["OUTPOST_CLIENT_KEY"] = cert, key
	if c, err := (tlsFlags{}).config(getenv); err != nil || c.GetClientCertificate == nil || c.ServerName != "env.name" {
		t.Errorf("client certificate from env: %v", err)
	}
	if _, err := (tlsFlags{clientCert: cert}).config(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "give both") {
		t.Errorf("certificate without key: %v", err)
	}
	old, oldKey, err := p.Issue(tlsutil.RoleClient, "old", tlsutil.IssueOptions{Now: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Days: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tlsFlags{caCert: p.CAFile, clientCert: old, clientKey: oldKey}).config(getenv); err == nil || !strings.Contains(err.Error(), "expired at 2020-01-02") {
		t.Errorf("expired client certificate: %v", err)
	}
}
