package command

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/outpost-run/outpost/agent"
)

// OperatorSnapshotSaveCommand saves the cluster state to a file.
type OperatorSnapshotSaveCommand struct{ Meta *Meta }

func (c *OperatorSnapshotSaveCommand) Synopsis() string {
	return "Save a snapshot of the cluster state"
}

func (c *OperatorSnapshotSaveCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator snapshot save [options] FILE

  Saves every job, log, project and runner record to FILE. The snapshot
  includes every write acknowledged before the command ran.

Options:

  -stale   Save the contacted server's copy even without a leader.
` + clientHelp)
}

func (c *OperatorSnapshotSaveCommand) Run(args []string) int {
	var stale bool
	fs := c.Meta.flagSet("operator snapshot save", true)
	fs.BoolVar(&stale, "stale", false, "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: snapshot save takes exactly one argument, the file to write")
		return exitUsage
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	u := client.Address + "/v1/operator/snapshot"
	if stale {
		u += "?stale"
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	setToken(req, client)
	resp, err := client.HTTP.Do(req)
	if err != nil {
		return c.Meta.errorf("cannot reach %s: %v", client.Address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return c.Meta.errorf("saving snapshot: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	path := fs.Arg(0)
	tmp := path + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return c.Meta.errorf("writing %s: %v", path, err)
	}
	fmt.Fprintf(c.Meta.Stdout, "Saved snapshot to %s (%d bytes)\n", path, n)
	return exitOK
}

// OperatorSnapshotRestoreCommand replaces the cluster state with a file's.
type OperatorSnapshotRestoreCommand struct{ Meta *Meta }

func (c *OperatorSnapshotRestoreCommand) Synopsis() string {
	return "Replace the cluster state with a snapshot"
}

func (c *OperatorSnapshotRestoreCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator snapshot restore [options] FILE

  Replaces the whole state of the cluster with the snapshot in FILE. Every
  server applies it through Raft. Jobs that were running keep their leases;
  their runners' reports are fenced if those leases are no longer current.
` + clientHelp)
}

func (c *OperatorSnapshotRestoreCommand) Run(args []string) int {
	fs := c.Meta.flagSet("operator snapshot restore", true)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: snapshot restore takes exactly one argument, the snapshot file")
		return exitUsage
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	defer f.Close()
	if _, err := agent.InspectSnapshot(f); err != nil {
		return c.Meta.errorf("%s is not a valid outpost snapshot: %v", fs.Arg(0), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return c.Meta.errorf("%v", err)
	}
	client, err := c.Meta.client()
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, client.Address+"/v1/operator/snapshot", f)
	setToken(req, client)
	resp, err := client.HTTP.Do(req)
	if err != nil {
		return c.Meta.errorf("cannot reach %s: %v", client.Address, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return c.Meta.errorf("restoring snapshot: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	fmt.Fprint(c.Meta.Stdout, "Restored: "+string(b))
	return exitOK
}

// OperatorSnapshotInspectCommand describes a snapshot file.
type OperatorSnapshotInspectCommand struct{ Meta *Meta }

func (c *OperatorSnapshotInspectCommand) Synopsis() string { return "Describe a snapshot file" }

func (c *OperatorSnapshotInspectCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost operator snapshot inspect FILE

  Reads a snapshot file completely, checking it, and prints what it holds.
  Needs no server.
`)
}

func (c *OperatorSnapshotInspectCommand) Run(args []string) int {
	fs := c.Meta.flagSet("operator snapshot inspect", false)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() != 1 {
		c.Meta.UI.Error("Error: snapshot inspect takes exactly one argument, the snapshot file")
		return exitUsage
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return c.Meta.errorf("%v", err)
	}
	defer f.Close()
	info, err := agent.InspectSnapshot(f)
	if err != nil {
		return c.Meta.errorf("%s is not a valid outpost snapshot: %v", fs.Arg(0), err)
	}
	fmt.Fprintf(c.Meta.Stdout, "Index       %d\nSize        %d bytes\nJobs        %d\nLog chunks  %d\nProjects    %d\nRunners     %d\n",
		info.Index, info.Size, info.Jobs, info.LogChunks, info.Projects, info.Runners)
	return exitOK
}
