package command

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLTokenInfoCommand shows a token.
type ACLTokenInfoCommand struct{ Meta *Meta }

func (c *ACLTokenInfoCommand) Synopsis() string { return "Show an ACL token" }

func (c *ACLTokenInfoCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl token info [options] (-self | ACCESSOR)

  Shows a token by accessor id (needs acl read), or with -self the token
  this command sends (any token may read itself).

Options:

  -self    The caller's own token.
  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *ACLTokenInfoCommand) Run(args []string) int {
	var self, asJSON, stale bool
	fs := c.Meta.flagSet("acl token info", true)
	fs.BoolVar(&self, "self", false, "")
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&stale, "stale", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	id := "self"
	switch {
	case self && fs.NArg() == 0:
	case !self && fs.NArg() == 1:
		id = fs.Arg(0)
	default:
		c.Meta.UI.Error("Error: acl token info takes -self or exactly one accessor id")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.ACL.GetToken(context.Background(), connect.NewRequest(&pb.GetTokenRequest{AccessorId: id, Stale: stale}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	c.Meta.printToken(resp.Msg.Token, "")
	return exitOK
}
