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

// ACLPolicyListCommand lists policies.
type ACLPolicyListCommand struct{ Meta *Meta }

func (c *ACLPolicyListCommand) Synopsis() string { return "List ACL policies" }

func (c *ACLPolicyListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl policy list [options]

  Lists ACL policies. Needs acl read.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *ACLPolicyListCommand) Run(args []string) int {
	return readCommand(c.Meta, "acl policy list", args, true,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListPoliciesResponse, error) {
			return answer(client.ACL.ListPolicies(ctx, connect.NewRequest(&pb.ListPoliciesRequest{Stale: stale})))
		},
		func(resp *pb.ListPoliciesResponse) {
			if len(resp.Policies) == 0 {
				fmt.Fprintln(c.Meta.Stdout, "No policies. Create one with: outpost acl policy apply NAME FILE")
				return
			}
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tDESCRIPTION\tMODIFY INDEX")
			for _, p := range resp.Policies {
				fmt.Fprintf(w, "%s\t%s\t%d\n", p.Name, orDash(p.Description), p.ModifyIndex)
			}
			w.Flush()
		})
}
