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

// ACLTokenListCommand lists tokens.
type ACLTokenListCommand struct{ Meta *Meta }

func (c *ACLTokenListCommand) Synopsis() string { return "List ACL tokens" }

func (c *ACLTokenListCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl token list [options]

  Lists tokens by accessor id (never their secrets). Needs acl read.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *ACLTokenListCommand) Run(args []string) int {
	return readCommand(c.Meta, "acl token list", args, true,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.ListTokensResponse, error) {
			return answer(client.ACL.ListTokens(ctx, connect.NewRequest(&pb.ListTokensRequest{Stale: stale})))
		},
		func(resp *pb.ListTokensResponse) {
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ACCESSOR\tNAME\tPOLICIES\tUSER\tEXPIRES")
			for _, t := range resp.Tokens {
				pol := strings.Join(t.Policies, ",")
				if t.Management {
					pol = "(management)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.AccessorId, orDash(t.Name), orDash(pol), orDash(t.User), when(t.ExpiresAt))
			}
			w.Flush()
		})
}
