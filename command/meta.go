package command

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/mitchellh/cli"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
)

// Meta carries what every command shares: the UI and the client flags.
type Meta struct {
	UI     cli.Ui
	Stdout io.Writer
	Stderr io.Writer

	address string
	token   string
	// anonymous sends no token whatever is configured (login).
	anonymous bool
	tls       tlsFlags
}

// tlsFlags are the client's TLS flags; each falls back to its variable.
type tlsFlags struct {
	caCert, clientCert, clientKey, serverName string
}

// config builds the client's TLS configuration, nil when no CA is given
// (plain http:// addresses, or https:// verified by the system's roots).
func (t tlsFlags) config(getenv func(string) string) (*tls.Config, error) {
	pick := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return getenv(env)
	}
	ca := pick(t.caCert, "OUTPOST_CACERT")
	cert := pick(t.clientCert, "OUTPOST_CLIENT_CERT")
	key := pick(t.clientKey, "OUTPOST_CLIENT_KEY")
	name := pick(t.serverName, "OUTPOST_TLS_SERVER_NAME")
	if ca == "" && cert == "" && key == "" && name == "" {
		return nil, nil
	}
	return tlsutil.ClientConfig(ca, cert, key, name)
}

// flagSet returns a flag set with the client flags when client is true.
func (m *Meta) flagSet(name string, client bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if client {
		fs.StringVar(&m.address, "address", "", "")
		fs.StringVar(&m.token, "token", "", "")
		fs.StringVar(&m.tls.caCert, "ca-cert", "", "")
		fs.StringVar(&m.tls.clientCert, "client-cert", "", "")
		fs.StringVar(&m.tls.clientKey, "client-key", "", "")
		fs.StringVar(&m.tls.serverName, "tls-server-name", "", "")
	}
	return fs
}

const clientHelp = `
Client options:

  -address=<addr>[,<addr>...]
    The server's HTTP API address; with several, the client moves to the
    next when one cannot be reached. Also OUTPOST_ADDR.
    Default: http://127.0.0.1:7700 (https:// when a CA is given); an
    address without a scheme is https:// when a CA is given.

  -token=<token>
    An ACL token's secret. Also OUTPOST_TOKEN; without either, the token
    that 'outpost login' stored (~/.config/outpost/token), if any.

  -ca-cert=<path>
    The CA certificate that verifies the server's (outpost tls ca
    create's <domain>-agent-ca.pem). Also OUTPOST_CACERT.

  -client-cert=<path>
    A client certificate to present (outpost tls cert create -client),
    for servers with verify_incoming. Also OUTPOST_CLIENT_CERT.

  -client-key=<path>
    The client certificate's key. Also OUTPOST_CLIENT_KEY.

  -tls-server-name=<name>
    The name the server's certificate must carry, when the address is
    not one of its names (server.outpost for any server of the default
    domain). Also OUTPOST_TLS_SERVER_NAME.`

// parse parses flags and reports a usage error in the CLI's words.
func (m *Meta) parse(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		m.UI.Error("Error: " + err.Error())
		m.UI.Error("Run 'outpost " + fs.Name() + " -h' for usage.")
		return false
	}
	return true
}

// client returns an API client from the flags and the environment.
func (m *Meta) client() (*rpc.Client, error) {
	addr := m.address
	if addr == "" {
		addr = os.Getenv("OUTPOST_ADDR")
	}
	token, err := m.resolveToken()
	if err != nil {
		return nil, err
	}
	tc, err := m.tls.config(os.Getenv)
	if err != nil {
		return nil, err
	}
	return rpc.NewClientTLS(addr, nil, tc, rpc.WithToken(token))
}

// resolveToken is the token a command sends: -token, else OUTPOST_TOKEN,
// else the one `outpost login` stored.
func (m *Meta) resolveToken() (string, error) {
	if m.anonymous {
		return "", nil
	}
	if m.token != "" {
		return m.token, nil
	}
	if v := os.Getenv("OUTPOST_TOKEN"); v != "" {
		return v, nil
	}
	t, _, err := readTokenFile()
	return t, err
}

// apiError turns an RPC error into one line a person can act on.
func (m *Meta) apiError(c *rpc.Client, err error) string {
	if msg, ok := tlsutil.ExplainClientError(err, c.Address, "-ca-cert"); ok {
		return msg
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		if msg, ok := m.plainAgainstTLS(c, ce); ok {
			return msg
		}
		if ce.Code() == connect.CodeUnavailable && strings.Contains(ce.Message(), "connect") {
			return fmt.Sprintf("cannot reach an outpost server at %s: %s\nIs an agent running there? Start one with `outpost agent -dev`, or set -address / OUTPOST_ADDR.", c.Address, ce.Message())
		}
		return ce.Message()
	}
	return err.Error()
}

// plainAgainstTLS says so when a plain http:// client failed against a
// server that speaks TLS: Go's server answers HTTP/1.1 with a 400 and
// drops an h2c preface, which alone read as a broken server.
func (m *Meta) plainAgainstTLS(c *rpc.Client, ce *connect.Error) (string, bool) {
	u, err := url.Parse(c.Address)
	if err != nil || u.Scheme != "http" {
		return "", false
	}
	switch ce.Code() {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal:
	default:
		return "", false
	}
	if strings.Contains(ce.Message(), "refused") || !tlsutil.SpeaksTLS(context.Background(), u.Host) {
		return "", false
	}
	return fmt.Sprintf("server at %s speaks TLS; use https:// and -ca-cert (OUTPOST_CACERT)", u.Host), true
}

func (m *Meta) errorf(format string, args ...any) int {
	m.UI.Error("Error: " + fmt.Sprintf(format, args...))
	return exitError
}

// readCommand runs a command that reads one answer and prints it: it
// parses -json (and -stale when withStale), calls the API once and prints
// the answer as JSON, or as render writes it.
func readCommand[T proto.Message](m *Meta, name string, args []string, withStale bool,
	call func(ctx context.Context, c *rpc.Client, stale bool) (T, error), render func(T)) int {
	var asJSON, stale bool
	fs := m.flagSet(name, true)
	fs.BoolVar(&asJSON, "json", false, "")
	if withStale {
		fs.BoolVar(&stale, "stale", false, "")
	}
	if !m.parse(fs, args) {
		return exitUsage
	}
	client, err := m.client()
	if err != nil {
		return m.errorf("%v", err)
	}
	msg, err := call(context.Background(), client, stale)
	if err != nil {
		return m.errorf("%s", m.apiError(client, err))
	}
	if asJSON {
		return m.printJSON(msg)
	}
	render(msg)
	return exitOK
}

// argCommand runs a command that takes one argument and makes one API
// call with it: it parses args with fs (the caller's flag set, holding the
// command's own flags), requires exactly one argument (what names it in the
// usage error), calls once with it and hands the answer to show, which
// prints it and returns the exit code. A failed call is printed in the
// CLI's words.
func argCommand[T any](m *Meta, fs *flag.FlagSet, what string, args []string,
	call func(ctx context.Context, c *rpc.Client, arg string) (T, error), show func(T) int) int {
	if !m.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		m.UI.Error(fmt.Sprintf("Error: %s takes exactly one argument, %s", fs.Name(), what))
		return exitUsage
	}
	client, err := m.client()
	if err != nil {
		return m.errorf("%v", err)
	}
	answer, err := call(context.Background(), client, fs.Arg(0))
	if err != nil {
		return m.errorf("%s", m.apiError(client, err))
	}
	return show(answer)
}

// answer unwraps a unary call's response, for readCommand's call.
func answer[R any](resp *connect.Response[R], err error) (*R, error) {
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// printJSON writes a message as indented JSON, in the API's own field names.
func (m *Meta) printJSON(msg proto.Message) int {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
	if err != nil {
		return m.errorf("encoding JSON: %v", err)
	}
	fmt.Fprintln(m.Stdout, string(b))
	return exitOK
}
