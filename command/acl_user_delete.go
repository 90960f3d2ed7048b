package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLUserDeleteCommand removes a user.
type ACLUserDeleteCommand struct{ Meta *Meta }

func (c *ACLUserDeleteCommand) Synopsis() string { return "Delete a user and revoke its logins" }

func (c *ACLUserDeleteCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl user delete [options] NAME

  Deletes a user; the tokens it got at login are revoked with it. Needs
  acl write.
` + clientHelp)
}

func (c *ACLUserDeleteCommand) Run(args []string) int {
	fs := c.Meta.flagSet("acl user delete", true)
	return argCommand(c.Meta, fs, "a user name", args,
		func(ctx context.Context, client *rpc.Client, name string) (string, error) {
			_, err := client.ACL.DeleteUser(ctx, connect.NewRequest(&pb.DeleteUserRequest{Name: name}))
			return name, err
		},
		func(name string) int {
			fmt.Fprintf(c.Meta.Stdout, "User %q deleted.\n", name)
			return exitOK
		})
}
