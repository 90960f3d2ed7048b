package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLUserPasswdCommand changes a user's password.
type ACLUserPasswdCommand struct{ Meta *Meta }

func (c *ACLUserPasswdCommand) Synopsis() string { return "Set a user's password" }

func (c *ACLUserPasswdCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl user passwd [options] NAME

  Sets a user's password, read as 'acl user create' reads it (terminal
  without echo, or stdin). Tokens from earlier logins stay valid until
  they expire or are revoked. Needs acl write.
` + clientHelp)
}

func (c *ACLUserPasswdCommand) Run(args []string) int {
	fs := c.Meta.flagSet("acl user passwd", true)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: acl user passwd takes exactly one argument, the user name")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	pw, err := c.Meta.readPassword("New password for "+fs.Arg(0)+": ", true)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	if _, err := client.ACL.SetPassword(context.Background(), connect.NewRequest(&pb.SetPasswordRequest{Name: fs.Arg(0), Password: pw})); err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	fmt.Fprintf(c.Meta.Stdout, "Password of %q changed.\n", fs.Arg(0))
	return exitOK
}
