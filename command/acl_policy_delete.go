package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLPolicyDeleteCommand removes a policy.
type ACLPolicyDeleteCommand struct{ Meta *Meta }

func (c *ACLPolicyDeleteCommand) Synopsis() string { return "Delete an ACL policy" }

func (c *ACLPolicyDeleteCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl policy delete [options] NAME

  Deletes a policy. Tokens and users that name it lose what it gave them,
  at once. Needs acl write.
` + clientHelp)
}

func (c *ACLPolicyDeleteCommand) Run(args []string) int {
	fs := c.Meta.flagSet("acl policy delete", true)
	return argCommand(c.Meta, fs, "a policy name", args,
		func(ctx context.Context, client *rpc.Client, name string) (string, error) {
			_, err := client.ACL.DeletePolicy(ctx, connect.NewRequest(&pb.DeletePolicyRequest{Name: name}))
			return name, err
		},
		func(name string) int {
			fmt.Fprintf(c.Meta.Stdout, "Policy %q deleted.\n", name)
			return exitOK
		})
}
