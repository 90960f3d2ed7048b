package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// LogoutCommand revokes the stored token and deletes it.
type LogoutCommand struct{ Meta *Meta }

func (c *LogoutCommand) Synopsis() string { return "Log out: revoke the stored token and delete it" }

func (c *LogoutCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost logout [options]

  Revokes the token 'outpost login' stored and deletes the file. A token
  the servers no longer know (expired, revoked) is just deleted.
` + clientHelp)
}

func (c *LogoutCommand) Run(args []string) int {
	fs := c.Meta.flagSet("logout", true)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	token, path, err := readTokenFile()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	if token == "" {
		fmt.Fprintln(c.Meta.Stdout, "Not logged in: there is no stored token.")
		return exitOK
	}
	c.Meta.token = token
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	_, err = client.ACL.Logout(context.Background(), connect.NewRequest(&pb.LogoutRequest{}))
	if err != nil && connect.CodeOf(err) != connect.CodeUnauthenticated {
		return c.Meta.errorf("%s (the token file %s is kept)", c.Meta.apiError(client, err), path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return c.Meta.errorf("deleting %s: %v", path, err)
	}
	fmt.Fprintln(c.Meta.Stdout, "Logged out.")
	return exitOK
}
