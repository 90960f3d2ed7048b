package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// DefaultDomain is the domain role names live in: `server.outpost`.
const DefaultDomain = "outpost"

// Default lifetimes, as `consul tls` has them: a CA for five years, a
// certificate for one.
const (
	DefaultCADays   = 1825
	DefaultCertDays = 365
)

// Role is what a certificate lets its holder be.
type Role string

// The three roles; a certificate carries `<role>.<domain>` as a DNS name.
const (
	RoleServer Role = "server"
	RoleRunner Role = "runner"
	RoleClient Role = "client"
)

// Roles lists every role, in the order PeerRoleOf tries them.
var Roles = []Role{RoleServer, RoleRunner, RoleClient}

// Name is the DNS name a certificate of role r carries in domain.
func (r Role) Name(domain string) string {
	if domain == "" {
		domain = DefaultDomain
	}
	return string(r) + "." + domain
}

// CAOptions say what CA GenerateCA makes.
type CAOptions struct {
	Domain string
	Days   int
	// Now is the start of validity; zero is the current time. Tests make
	// expired CAs with it.
	Now time.Time
}

// GenerateCA makes a self-signed ECDSA P-256 CA and returns its
// certificate and key in PEM.
func GenerateCA(o CAOptions) (certPEM, keyPEM []byte, err error) {
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Days <= 0 {
		o.Days = DefaultCADays
	}
	key, tmpl, err := newTemplate(o.Now, o.Days)
	if err != nil {
		return nil, nil, err
	}
	tmpl.Subject = pkix.Name{CommonName: "Outpost Agent CA " + tmpl.SerialNumber.Text(10)[:8], Organization: []string{"Outpost"}}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	return sign(tmpl, tmpl, key, key)
}

// newTemplate makes a fresh ECDSA P-256 key and a certificate template
// for it: a random serial, its key id, valid from a minute before now
// (the current time if zero, so that a clock a little behind accepts
// it) for days.
func newTemplate(now time.Time, days int) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	return key, &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Duration(days) * 24 * time.Hour),
		SubjectKeyId: ski,
	}, nil
}

// sign signs tmpl (for key) with parent's key signer and returns the
// certificate and key in PEM.
func sign(tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertOptions say what certificate GenerateCert makes.
type CertOptions struct {
	// CACert and CAKey are the signing CA, in PEM.
	CACert, CAKey []byte
	Role          Role
	Domain        string
	Days          int
	// DNSNames and IPs are added to the role's name; a server also gets
	// localhost and 127.0.0.1.
	DNSNames []string
	IPs      []net.IP
	// Now is the start of validity; zero is the current time.
	Now time.Time
}

// GenerateCert makes a certificate for a role, signed by the CA, and
// returns it and its key in PEM.
func GenerateCert(o CertOptions) (certPEM, keyPEM []byte, err error) {
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Days <= 0 {
		o.Days = DefaultCertDays
	}
	switch o.Role {
	case RoleServer, RoleRunner, RoleClient:
	default:
		return nil, nil, fmt.Errorf("tls: role %q: use server, runner or client", o.Role)
	}
	ca, caKey, err := ParseCA(o.CACert, o.CAKey)
	if err != nil {
		return nil, nil, err
	}
	key, tmpl, err := newTemplate(o.Now, o.Days)
	if err != nil {
		return nil, nil, err
	}
	name := o.Role.Name(o.Domain)
	dns := []string{name}
	ips := []net.IP{}
	if o.Role == RoleServer {
		dns = append(dns, "localhost")
		ips = append(ips, net.IPv4(127, 0, 0, 1))
	}
	dns = append(dns, o.DNSNames...)
	ips = append(ips, o.IPs...)
	// Every role authenticates both ways: servers dial servers with
	// their own certificate, and a runner's or client's is a client
	// certificate.
	tmpl.Subject = pkix.Name{CommonName: name}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.DNSNames, tmpl.IPAddresses = dns, ips
	tmpl.AuthorityKeyId = ca.SubjectKeyId
	if tmpl.NotAfter.After(ca.NotAfter) {
		// A certificate cannot outlive its CA; clients would refuse it.
		tmpl.NotAfter = ca.NotAfter
	}
	return sign(tmpl, ca, key, caKey)
}

// ParseCA reads a CA certificate and its key from PEM.
func ParseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("tls: the CA file holds no PEM certificate")
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("tls: the CA file's certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("tls: the CA key file holds no PEM key")
	}
	k, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		pk, err2 := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err2 != nil {
			return nil, nil, fmt.Errorf("tls: CA key: %w", err)
		}
		var ok bool
		if k, ok = pk.(*ecdsa.PrivateKey); !ok {
			return nil, nil, errors.New("tls: CA key is not an ECDSA key")
		}
	}
	if !k.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, errors.New("tls: the CA key does not belong to the CA certificate")
	}
	return ca, k, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("tls: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls: serial number: %w", err)
	}
	return n, nil
}

func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tls: encode public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}
