package tlsutil

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI is a CA with its files in a directory, issuing certificates into
// the same directory: what test clusters and benchmarks set TLS up with,
// in-process, with the same code as `outpost tls`.
type PKI struct {
	Dir    string
	Domain string
	CAFile string
	caCert []byte
	caKey  []byte
}

// NewPKI makes a CA for domain and writes it to dir/ca.pem.
func NewPKI(dir, domain string) (*PKI, error) {
	if domain == "" {
		domain = DefaultDomain
	}
	cert, key, err := GenerateCA(CAOptions{Domain: domain})
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, Domain: domain, CAFile: filepath.Join(dir, "ca.pem"), caCert: cert, caKey: key}
	if err := os.WriteFile(p.CAFile, cert, 0o644); err != nil {
		return nil, fmt.Errorf("tls: write CA: %w", err)
	}
	return p, nil
}

// IssueOptions adjust a certificate Issue makes.
type IssueOptions struct {
	DNSNames []string
	IPs      []net.IP
	// Now shifts the validity; with Days 1 and Now two days ago, the
	// certificate has expired.
	Now  time.Time
	Days int
}

// Issue writes a certificate of role as dir/<name>.pem and its key as
// dir/<name>-key.pem, and returns both paths.
func (p *PKI) Issue(role Role, name string, o IssueOptions) (certFile, keyFile string, err error) {
	cert, key, err := GenerateCert(CertOptions{CACert: p.caCert, CAKey: p.caKey, Role: role, Domain: p.Domain,
		Days: o.Days, DNSNames: o.DNSNames, IPs: o.IPs, Now: o.Now})
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(p.Dir, name+".pem"), filepath.Join(p.Dir, name+"-key.pem")
	if err := os.WriteFile(certFile, cert, 0o644); err != nil {
		return "", "", fmt.Errorf("tls: write certificate: %w", err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return "", "", fmt.Errorf("tls: write key: %w", err)
	}
	return certFile, keyFile, nil
}

// Config is a tlsutil.Config with the PKI's CA and the given files.
func (p *PKI) Config(certFile, keyFile string) Config {
	return Config{CAFile: p.CAFile, CertFile: certFile, KeyFile: keyFile, Domain: p.Domain, VerifyServerHostname: true}
}
