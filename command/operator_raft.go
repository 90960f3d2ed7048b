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

// OperatorRaftListPeersCommand lists the Raft configuration.
type OperatorRaftListPeersCommand struct{ Meta *Meta }

func (c *OperatorRaftListPeersCommand) Synopsis() string { return "List the Raft peers" }

func (c *OperatorRaftListPeersCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator raft list-peers [options]

  Lists the servers in the Raft configuration and which one leads.

Options:

  -stale   Answer from the contacted server's copy, even without a leader.
  -json    Print as JSON.
` + clientHelp)
}

func (c *OperatorRaftListPeersCommand) Run(args []string) int {
	return readCommand(c.Meta, "operator raft list-peers", args, true,
		func(ctx context.Context, client *rpc.Client, stale bool) (*pb.RaftPeersResponse, error) {
			return answer(client.Operator.RaftPeers(ctx, connect.NewRequest(&pb.RaftPeersRequest{Stale: stale})))
		},
		func(resp *pb.RaftPeersResponse) {
			w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tADDRESS\tSTATE\tVOTER")
			for _, p := range resp.Peers {
				st := "follower"
				if p.Leader {
					st = "leader"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%t\n", p.Id, p.Address, st, p.Voter)
			}
			w.Flush()
		})
}

// OperatorRaftRemovePeerCommand removes a dead server from Raft.
type OperatorRaftRemovePeerCommand struct{ Meta *Meta }

func (c *OperatorRaftRemovePeerCommand) Synopsis() string {
	return "Remove a server from the Raft peers"
}

func (c *OperatorRaftRemovePeerCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator raft remove-peer [options] NODE

  Removes a server that is gone for good from the Raft configuration, by
  its name or Raft address, so it no longer counts toward the quorum.
` + clientHelp)
}

func (c *OperatorRaftRemovePeerCommand) Run(args []string) int {
	return argCommand(c.Meta, c.Meta.flagSet("operator raft remove-peer", true), "the node name or raft address", args,
		func(ctx context.Context, client *rpc.Client, peer string) (string, error) {
			_, err := client.Operator.RemovePeer(ctx, connect.NewRequest(&pb.RemovePeerRequest{Id: peer}))
			return peer, err
		},
		func(peer string) int {
			fmt.Fprintf(c.Meta.Stdout, "Removed peer %s\n", peer)
			return exitOK
		})
}
