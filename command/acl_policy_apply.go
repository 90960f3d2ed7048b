package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/acl"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLPolicyApplyCommand creates or replaces a policy from a file.
type ACLPolicyApplyCommand struct{ Meta *Meta }

func (c *ACLPolicyApplyCommand) Synopsis() string { return "Create or replace an ACL policy" }

func (c *ACLPolicyApplyCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost acl policy apply [options] NAME FILE|-

  Creates or replaces the policy NAME from an HCL file (- reads stdin):

    project "web" { policy = "submit" }   # read | submit | admin; * globs
    project "*"   { policy = "read" }
    runner   { policy = "register" }      # register | admin
    operator { policy = "read" }          # read | write
    acl = "read"                          # read | write

  The file is checked here first, with errors as file:line:col. The
  policy named "anonymous" applies to calls without a token.

Options:

  -description=<text>   What the policy is for.
` + clientHelp)
}

func (c *ACLPolicyApplyCommand) Run(args []string) int {
	var desc string
	fs := c.Meta.flagSet("acl policy apply", true)
	fs.StringVar(&desc, "description", "", "")
	pos, ok := c.Meta.parseInterspersed(fs, args)
	if !ok {
		return exitUsage
	}
	if len(pos) != 2 {
		c.Meta.UI.Error("Error: acl policy apply takes two arguments, NAME and FILE (or - for stdin)")
		return exitUsage
	}
	name, file := pos[0], pos[1]
	var src []byte
	var err error
	if file == "-" {
		src, err = io.ReadAll(io.LimitReader(os.Stdin, acl.MaxPolicyBytes+1))
		file = "stdin"
	} else {
		src, err = os.ReadFile(file)
	}
	if err != nil {
		return c.Meta.errorf("reading the policy: %v", err)
	}
	if _, err := acl.ParsePolicy(file, src); err != nil {
		return c.Meta.errorf("%v", err)
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.ACL.UpsertPolicy(context.Background(), connect.NewRequest(&pb.UpsertPolicyRequest{Name: name, Description: desc, Rules: string(src)}))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	fmt.Fprintf(c.Meta.Stdout, "Policy %q applied (index %d).\n", resp.Msg.Policy.Name, resp.Msg.Policy.ModifyIndex)
	return exitOK
}
