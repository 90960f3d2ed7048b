package command

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLBootstrapCommand makes the first management token.
type ACLBootstrapCommand struct{ Meta *Meta }

func (c *ACLBootstrapCommand) Synopsis() string { return "Make the first management token (once)" }

func (c *ACLBootstrapCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl bootstrap [options]

  Makes the cluster's first management token, which may do everything,
  and prints its secret once. It works once per cluster: a second
  bootstrap is refused with a reset index. To bootstrap again (the secret
  is lost), write that index to <data_dir>/acl-bootstrap-reset on the
  leader and run this again; see website/acl.md.

Options:

  -json    Print as JSON.
` + clientHelp)
}

func (c *ACLBootstrapCommand) Run(args []string) int {
	var asJSON bool
	fs := c.Meta.flagSet("acl bootstrap", true)
	fs.BoolVar(&asJSON, "json", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.ACL.Bootstrap(context.Background(), connect.NewRequest(&pb.ACLBootstrapRequest{}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	c.Meta.printToken(resp.Msg.Token, resp.Msg.Secret)
	return exitOK
}
