package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLPolicyInfoCommand shows one policy.
type ACLPolicyInfoCommand struct{ Meta *Meta }

func (c *ACLPolicyInfoCommand) Synopsis() string { return "Show an ACL policy and its rules" }

func (c *ACLPolicyInfoCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl policy info [options] NAME

  Shows a policy and its rules as applied. Needs acl read.

Options:

  -json    Print as JSON.
  -stale   Answer from the contacted server's copy.
` + clientHelp)
}

func (c *ACLPolicyInfoCommand) Run(args []string) int {
	var asJSON, stale bool
	fs := c.Meta.flagSet("acl policy info", true)
	fs.BoolVar(&asJSON, "json", false, "")
	fs.BoolVar(&stale, "stale", false, "")
	return argCommand(c.Meta, fs, "a policy name", args,
		func(ctx context.Context, client *rpc.Client, name string) (*pb.GetPolicyResponse, error) {
			return answer(client.ACL.GetPolicy(ctx, connect.NewRequest(&pb.GetPolicyRequest{Name: name, Stale: stale})))
		},
		func(resp *pb.GetPolicyResponse) int {
			if asJSON {
				return c.Meta.printJSON(resp)
			}
			p := resp.Policy
			fmt.Fprintf(c.Meta.Stdout, "Name:         %s\nDescription:  %s\nModify index: %d\nRules:\n%s\n", p.Name, orDash(p.Description), p.ModifyIndex, strings.TrimRight(p.Rules, "\n"))
			return exitOK
		})
}
