package command

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

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
	var asJSON bool
	fs := c.Meta.flagSet("members", true)
	fs.BoolVar(&asJSON, "json", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Operator.Members(context.Background(), connect.NewRequest(&pb.MembersRequest{}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tADDRESS\tSTATUS\tROLE\tMETA")
	for _, m := range resp.Msg.Members {
		var meta []string
		for k, v := range m.Meta {
			meta = append(meta, k+"="+v)
		}
		sort.Strings(meta)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address, m.Status, orDash(m.Role), strings.Join(meta, " "))
	}
	w.Flush()
	return exitOK
}
