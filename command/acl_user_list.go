package command

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLUserListCommand lists users.
type ACLUserListCommand struct{ Meta *Meta }

func (c *ACLUserListCommand) Synopsis() string { return "List users" }

func (c *ACLUserListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl user list [options]

  Lists users and their policies. Needs acl read.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *ACLUserListCommand) Run(args []string) int {
	return readCommand(c.Meta, "acl user list", args, true,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListUsersResponse, error) {
			return answer(client.ACL.ListUsers(ctx, connect.NewRequest(&pb.ListUsersRequest{Stale: stale})))
		},
		func(resp *pb.ListUsersResponse) {
			if len(resp.Users) == 0 {
				fmt.Fprintln(c.Meta.Stdout, "No users. Create one with: outpost acl user create NAME -policy P")
				return
			}
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tPOLICIES")
			for _, u := range resp.Users {
				fmt.Fprintf(w, "%s\t%s\n", u.Name, orDash(strings.Join(u.Policies, ",")))
			}
			w.Flush()
		})
}
