package command

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"

	"connectrpc.com/connect"
	"golang.org/x/term"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// LoginCommand exchanges a password for a token and stores it.
type LoginCommand struct{ Meta *Meta }

func (c *LoginCommand) Synopsis() string {
	return "Log in: get a token that expires, used by every command"
}

func (c *LoginCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost login [options]

  Logs in with a user's password (read from the terminal without echo, or
  the first line of stdin) and stores the token it gets in
  $XDG_CONFIG_HOME/outpost/token (else ~/.config/outpost/token), mode
  0600. Every command sends it when neither -token nor OUTPOST_TOKEN is
  given. The token expires after the servers' login_token_ttl (24h by
  default). Failed logins are throttled per user and per address.

Options:

  -user=<name>   The user; default: asked for on a terminal, else the
                 login name of this account.
` + clientHelp)
}

func (c *LoginCommand) Run(args []string) int {
	var name string
	fs := c.Meta.flagSet("login", true)
	fs.StringVar(&name, "user", "", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.Meta.UI.Error("Error: login takes no arguments; give the user with -user")
		return exitUsage
	}
	if name == "" {
		def := ""
		if u, err := user.Current(); err == nil {
			def = u.Username
		}
		if term.IsTerminal(int(os.Stdin.Fd())) {
			fmt.Fprintf(c.Meta.Stderr, "User [%s]: ", def)
			line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			name = strings.TrimSpace(line)
		}
		if name == "" {
			name = def
		}
	}
	// Log in anonymously: a stale stored token must not get in the way.
	c.Meta.anonymous = true
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	pw, err := c.Meta.readPassword("Password for "+name+": ", false)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.ACL.Login(context.Background(), connect.NewRequest(&pb.LoginRequest{User: name, Password: pw}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	path, err := writeTokenFile(resp.Msg.Secret)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	fmt.Fprintf(c.Meta.Stdout, "Logged in as %s; the token (accessor %s) expires %s.\nStored in %s.\n", name, resp.Msg.Token.AccessorId, when(resp.Msg.Token.ExpiresAt), path)
	return exitOK
}
