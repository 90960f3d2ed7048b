package command

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/agent"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// OperatorKeygenCommand prints a new gossip encryption key.
type OperatorKeygenCommand struct{ Meta *Meta }

func (c *OperatorKeygenCommand) Synopsis() string { return "Make a gossip encryption key" }

func (c *OperatorKeygenCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator keygen

  Prints a new gossip encryption key: 32 random bytes (AES-256), base64.
  Every server and runner outside -dev needs one, the same for all:

      outpost agent -server -encrypt=KEY ...
      outpost runner agent -encrypt=KEY ...

  To change the key of a running cluster, see ` + "`outpost operator gossip keyring`" + `.
`)
}

func (c *OperatorKeygenCommand) Run(args []string) int {
	fs := c.Meta.flagSet("operator keygen", false)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 0 {
		c.Meta.UI.Error("Error: operator keygen takes no arguments")
		return exitUsage
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return c.Meta.errorf("reading random bytes: %v", err)
	}
	fmt.Fprintln(c.Meta.Stdout, base64.StdEncoding.EncodeToString(key))
	return exitOK
}

// OperatorGossipKeyringCommand lists and rotates the gossip keys.
type OperatorGossipKeyringCommand struct{ Meta *Meta }

func (c *OperatorGossipKeyringCommand) Synopsis() string {
	return "List, install, use and remove gossip keys"
}

func (c *OperatorGossipKeyringCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator gossip keyring [options]

  Manages the cluster's gossip encryption keys. The keyring is cluster
  state, replicated through Raft: every server applies a change as it
  commits, and runners receive it over their stream and keep it in their
  data dir, so a restart keeps the current key whatever -encrypt says.

  Members encrypt with the primary key and accept every installed one. To
  rotate, with NEW from ` + "`outpost operator keygen`" + `:

      outpost operator gossip keyring -install NEW
      outpost operator gossip keyring -use NEW
      outpost operator gossip keyring -remove OLD

  Check with -list between steps that every member holds the new key
  before you remove the old one; give new agents -encrypt=NEW.

Options:

  -list          List the keys, which is primary, and how many live gossip
                 members (servers, runners) hold each. The default.
  -install=KEY   Add a key; members accept it from now on.
  -use=KEY       Make an installed key the primary.
  -remove=KEY    Remove a key that is not the primary.
  -json          Print the answer as JSON.
` + clientHelp)
}

func (c *OperatorGossipKeyringCommand) Run(args []string) int {
	var (
		list                 bool
		install, use, remove string
		asJSON               bool
	)
	fs := c.Meta.flagSet("operator gossip keyring", true)
	fs.BoolVar(&list, "list", false, "")
	fs.StringVar(&install, "install", "", "")
	fs.StringVar(&use, "use", "", "")
	fs.StringVar(&remove, "remove", "", "")
	fs.BoolVar(&asJSON, "json", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	req := &pb.GossipKeyringRequest{Op: "list"}
	n := 0
	for op, key := range map[string]string{"install": install, "use": use, "remove": remove} {
		if key != "" {
			req.Op, req.Key = op, key
			n++
		}
	}
	if list {
		n++
	}
	if n > 1 || fs.NArg() != 0 {
		c.Meta.UI.Error("Error: give one of -list, -install=KEY, -use=KEY, -remove=KEY")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	resp, err := client.Keyring.GossipKeyring(context.Background(), connect.NewRequest(req))
	if err != nil {
		return c.Meta.errorf("%s", c.Meta.apiError(client, err))
	}
	if asJSON {
		return c.Meta.printJSON(resp.Msg)
	}
	if req.Op != "list" {
		fmt.Fprintf(c.Meta.Stderr, "Gossip key %s: %s done\n", agent.KeyFingerprint(req.Key), req.Op)
	}
	if len(resp.Msg.Keys) == 0 {
		fmt.Fprintln(c.Meta.Stdout, "No gossip keyring recorded yet (the leader records its -encrypt key when it starts)")
		return exitOK
	}
	w := tabwriter.NewWriter(c.Meta.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY\tPRIMARY\tSERVERS\tRUNNERS")
	for _, k := range resp.Msg.Keys {
		fmt.Fprintf(w, "%s\t%t\t%d/%d\t%d/%d\n", k.Key, k.Primary, k.Servers, resp.Msg.Servers, k.Runners, resp.Msg.Runners)
	}
	_ = w.Flush()
	return exitOK
}
