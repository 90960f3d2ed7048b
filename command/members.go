package command

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// MembersCommand lists the gossip pool.
type MembersCommand struct{ Meta *Meta }

func (c *MembersCommand) Synopsis() string { return "List the servers and runners in the gossip pool" }

func (c *MembersCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost members [options]

  Lists the members of the gossip pool as the server you ask sees them,
  with their role, address and status (alive, failed, left).

Options:

  -json   Print as JSON.
` + clientHelp)
}

func (c *MembersCommand) Run(args []string) int {
	return readCommand(c.Meta, "members", args, false,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.MembersResponse, error) {
			return answer(client.Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{})))
		},
		func(resp *pb.MembersResponse) {
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tADDRESS\tSTATUS\tROLE\tMETA")
			for _, m := range resp.Members {
				var meta []string
				for k, v := range m.Meta {
					meta = append(meta, k+"="+v)
				}
				sort.Strings(meta)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address, m.Status, orDash(m.Role), strings.Join(meta, " "))
			}
			w.Flush()
		})
}
