package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-run/outpost/internal/tlsutil"
)

// TLSCACreateCommand writes a new CA for a cluster's certificates.
type TLSCACreateCommand struct{ Meta *Meta }

func (c *TLSCACreateCommand) Synopsis() string {
	return "Create a certificate authority for the cluster"
}

func (c *TLSCACreateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost tls ca create [options]

  Creates a certificate authority (an ECDSA P-256 key and a self-signed
  certificate) that signs the certificates of every server, runner and
  client of one cluster, and writes them to the current directory:

    <domain>-agent-ca.pem      the CA certificate: give it to every agent
                               (-ca-file) and client (-ca-cert)
    <domain>-agent-ca-key.pem  its key (mode 0600): keep it offline; only
                               ` + "`outpost tls cert create`" + ` needs it

  Existing files are never overwritten.

Options:

  -domain=DOMAIN  The domain role names live in: certificates carry
                  server.<domain>, runner.<domain> or client.<domain>.
                  Default "outpost".
  -days=N         How long the CA is valid. Default 1825 (5 years).
  -out=DIR        Write the files there instead of the current directory.
`)
}

func (c *TLSCACreateCommand) Run(args []string) int {
	var (
		domain, out string
		days        int
	)
	fl := c.Meta.flagSet("tls ca create", false)
	fl.StringVar(&domain, "domain", tlsutil.DefaultDomain, "")
	fl.IntVar(&days, "days", tlsutil.DefaultCADays, "")
	fl.StringVar(&out, "out", ".", "")
	if !c.Meta.parse(fl, args) {
		return exitUsage
	}
	if fl.NArg() > 0 || days < 1 || domain == "" {
		c.Meta.UI.Error("Error: tls ca create takes no arguments, -days of 1 or more and a -domain")
		return exitUsage
	}
	certFile := filepath.Join(out, domain+"-agent-ca.pem")
	keyFile := filepath.Join(out, domain+"-agent-ca-key.pem")
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err == nil {
			return c.Meta.errorf("%s already exists: remove it, or use -out to write elsewhere", f)
		}
	}
	cert, key, err := tlsutil.GenerateCA(tlsutil.CAOptions{Domain: domain, Days: days})
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	if err := writeNew(keyFile, key, 0o600); err != nil {
		return c.Meta.errorf("%v", err)
	}
	if err := writeNew(certFile, cert, 0o644); err != nil {
		_ = os.Remove(keyFile)
		return c.Meta.errorf("%v", err)
	}
	fmt.Fprintf(c.Meta.Stdout, "==> CA certificate saved to %s\n==> CA key saved to %s (keep it secret; only `outpost tls cert create` needs it)\n", certFile, keyFile)
	return exitOK
}

// writeNew writes a file that must not exist yet (O_EXCL, so two
// commands racing cannot both think they made it).
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w: remove it, or use -out to write elsewhere", path, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
