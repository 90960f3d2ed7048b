package command

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/outpost-run/outpost/internal/tlsutil"
)

// TLSCertCreateCommand writes a certificate for a server, runner or
// client, signed by the cluster's CA.
type TLSCertCreateCommand struct{ Meta *Meta }

func (c *TLSCertCreateCommand) Synopsis() string {
	return "Create a certificate for a server, runner or client"
}

func (c *TLSCertCreateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost tls cert create -server|-runner|-client [options]

  Creates a key and a certificate signed by the CA of ` + "`outpost tls ca create`" + `,
  for one role, and writes them to the current directory as
  <domain>-<role>-<n>.pem and <domain>-<role>-<n>-key.pem, n being the
  first number not taken (0, 1, …).

  The certificate carries <role>.<domain> as a DNS name, which is what
  agents check: the internal API and Raft take only server.<domain>, the
  runner stream only runner.<domain>. A server's also carries localhost
  and 127.0.0.1. Every certificate works both as a server's and as a
  client's (servers dial each other with theirs).

Options:

  -server                    A server's certificate.
  -runner                    A runner's certificate.
  -client                    A client's (CLI) certificate.
  -domain=DOMAIN             Default "outpost"; the CA's domain.
  -ca=FILE                   The CA certificate. Default <domain>-agent-ca.pem.
  -key=FILE                  The CA key. Default <domain>-agent-ca-key.pem.
  -days=N                    How long it is valid. Default 365.
  -additional-dnsname=NAME   Another DNS name it carries; repeatable.
  -additional-ipaddress=IP   An IP address it carries; repeatable.
  -out=DIR                   Write the files there instead of the current directory.
`)
}

func (c *TLSCertCreateCommand) Run(args []string) int {
	var (
		server, runner, client bool
		domain, ca, key, out   string
		days                   int
		dns, ips               stringsFlag
	)
	fl := c.Meta.flagSet("tls cert create", false)
	fl.BoolVar(&server, "server", false, "")
	fl.BoolVar(&runner, "runner", false, "")
	fl.BoolVar(&client, "client", false, "")
	fl.StringVar(&domain, "domain", tlsutil.DefaultDomain, "")
	fl.StringVar(&ca, "ca", "", "")
	fl.StringVar(&key, "key", "", "")
	fl.IntVar(&days, "days", tlsutil.DefaultCertDays, "")
	fl.Var(&dns, "additional-dnsname", "")
	fl.Var(&ips, "additional-ipaddress", "")
	fl.StringVar(&out, "out", ".", "")
	if !c.Meta.parse(fl, args) {
		return exitUsage
	}
	var roles []tlsutil.Role
	for _, r := range []struct {
		set  bool
		role tlsutil.Role
	}{{server, tlsutil.RoleServer}, {runner, tlsutil.RoleRunner}, {client, tlsutil.RoleClient}} {
		if r.set {
			roles = append(roles, r.role)
		}
	}
	if len(roles) != 1 || fl.NArg() > 0 || days < 1 {
		c.Meta.UI.Error("Error: give exactly one of -server, -runner or -client, no arguments, and -days of 1 or more")
		c.Meta.UI.Error("Run 'outpost tls cert create -h' for usage.")
		return exitUsage
	}
	role := roles[0]
	var ipList []net.IP
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			c.Meta.UI.Error(fmt.Sprintf("Error: -additional-ipaddress %q is not an IP address", s))
			return exitUsage
		}
		ipList = append(ipList, ip)
	}
	if ca == "" {
		ca = domain + "-agent-ca.pem"
	}
	if key == "" {
		key = domain + "-agent-ca-key.pem"
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return c.Meta.errorf("reading the CA certificate: %v (make one with `outpost tls ca create`, or give -ca)", err)
	}
	keyPEM, err := os.ReadFile(key)
	if err != nil {
		return c.Meta.errorf("reading the CA key: %v (give -key)", err)
	}
	cert, certKey, err := tlsutil.GenerateCert(tlsutil.CertOptions{CACert: caPEM, CAKey: keyPEM, Role: role, Domain: domain, Days: days, DNSNames: dns, IPs: ipList})
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	// The first free number; O_EXCL makes a race move on to the next.
	for n := 0; ; n++ {
		base := filepath.Join(out, domain+"-"+string(role)+"-"+strconv.Itoa(n))
		certFile, keyFile := base+".pem", base+"-key.pem"
		if _, err := os.Stat(keyFile); err == nil {
			continue
		}
		err := writeNew(certFile, cert, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return c.Meta.errorf("%v", err)
		}
		if err := writeNew(keyFile, certKey, 0o600); err != nil {
			_ = os.Remove(certFile)
			return c.Meta.errorf("%v", err)
		}
		fmt.Fprintf(c.Meta.Stdout, "==> Using CA %s\n==> %s certificate (%s) saved to %s\n==> Its key saved to %s\n",
			ca, role, role.Name(domain), certFile, keyFile)
		return exitOK
	}
}
