package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLTokenRevokeCommand deletes a token.
type ACLTokenRevokeCommand struct{ Meta *Meta }

func (c *ACLTokenRevokeCommand) Synopsis() string { return "Revoke an ACL token" }

func (c *ACLTokenRevokeCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl token revoke [options] ACCESSOR

  Revokes a token by accessor id: every server refuses it as soon as it
  has applied the revocation (the leader at once, followers within their
  replication lag, milliseconds). Needs acl write.
` + clientHelp)
}

func (c *ACLTokenRevokeCommand) Run(args []string) int {
	fs := c.Meta.flagSet("acl token revoke", true)
	return argCommand(c.Meta, fs, "an accessor id", args,
		func(ctx context.Context, client *rpc.Client, id string) (string, error) {
			_, err := client.ACL.RevokeToken(ctx, connect.NewRequest(&pb.RevokeTokenRequest{AccessorId: id}))
			return id, err
		},
		func(id string) int {
			fmt.Fprintf(c.Meta.Stdout, "Token %s revoked.\n", id)
			return exitOK
		})
}
