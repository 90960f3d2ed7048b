package command

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLUserCreateCommand adds a user.
type ACLUserCreateCommand struct{ Meta *Meta }

func (c *ACLUserCreateCommand) Synopsis() string { return "Create a user who logs in with a password" }

func (c *ACLUserCreateCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl user create [options] NAME

  Creates a user with policies. The password is read from the terminal
  without echo (asked twice), or as the first line of stdin when stdin is
  not a terminal; never from the command line. It is kept as an argon2id
  hash. The user then runs 'outpost login -user NAME'. Needs acl write.

Options:

  -policy=<name>   A policy (repeatable, or a,b).
  -json            Print as JSON.
` + clientHelp)
}

func (c *ACLUserCreateCommand) Run(args []string) int {
	var policies listFlag
	var asJSON bool
	fs := c.Meta.flagSet("acl user create", true)
	fs.Var(&policies, "policy", "")
	fs.BoolVar(&asJSON, "json", false, "")
	pos, ok := c.Meta.parseInterspersed(fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 1 {
		c.Meta.UI.Error("Error: acl user create takes exactly one argument, the user name")
		return exitUsage
	}
	name := pos[0]
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	pw, err := c.Meta.readPassword("Password for "+name+": ", true)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.ACL.CreateUser(context.Background(), connect.NewRequest(&pb.CreateUserRequest{Name: name, Policies: policies, Password: pw}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	fmt.Fprintf(c.Meta.Stdout, "User %q created with policies %s.\n", resp.Msg.User.Name, orDash(strings.Join(resp.Msg.User.Policies, ",")))
	return exitOK
}
