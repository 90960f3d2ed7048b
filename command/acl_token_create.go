package command

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLTokenCreateCommand makes a token.
type ACLTokenCreateCommand struct{ Meta *Meta }

func (c *ACLTokenCreateCommand) Synopsis() string { return "Create an ACL token" }

func (c *ACLTokenCreateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl token create [options]

  Creates a token with policies and prints its secret, once. Needs acl
  write.

Options:

  -name=<name>      What the token is for.
  -policy=<name>    A policy (repeatable, or a,b).
  -ttl=<duration>   Lifetime (e.g. 1h); the token is refused after it.
                    Default: never expires.
  -management       A management token, which may do everything.
  -json             Print as JSON.
` + clientHelp)
}

func (c *ACLTokenCreateCommand) Run(args []string) int {
	var name string
	var policies listFlag
	var ttl time.Duration
	var mgmt, asJSON bool
	fs := c.Meta.flagSet("acl token create", true)
	fs.StringVar(&name, "name", "", "")
	fs.Var(&policies, "policy", "")
	fs.DurationVar(&ttl, "ttl", 0, "")
	fs.BoolVar(&mgmt, "management", false, "")
	fs.BoolVar(&asJSON, "json", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.Meta.UI.Error("Error: acl token create takes no arguments; give policies with -policy")
		return exitUsage
	}
	if len(policies) == 0 && !mgmt {
		c.Meta.UI.Error("Error: give at least one -policy (or -management)")
		return exitUsage
	}
	if ttl < 0 {
		c.Meta.UI.Error("Error: -ttl must not be negative")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	req := &pb.CreateTokenRequest{Name: name, Policies: policies, Management: mgmt}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := client.ACL.CreateToken(context.Background(), connect.NewRequest(req))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	c.Meta.printToken(resp.Msg.Token, resp.Msg.Secret)
	return exitOK
}
