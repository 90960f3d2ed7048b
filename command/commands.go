package command

import (
	"io"
	"os"

	"github.com/mitchellh/cli"

	"github.com/outpost-run/outpost/agent"
	"github.com/outpost-run/outpost/runner/watchdog"
)

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Run runs the CLI with args (without the program name) and returns the
// process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	ui := &cli.BasicUi{Reader: os.Stdin, Writer: stdout, ErrorWriter: stderr}
	m := &Meta{UI: ui, Stdout: stdout, Stderr: stderr}
	c := &cli.CLI{
		Name:         "outpost",
		Version:      agent.Version,
		Args:         args,
		Commands:     Commands(m),
		Autocomplete: false,
		HelpWriter:   stdout,
		ErrorWriter:  stderr,
	}
	// Started by the runner itself, never by hand.
	c.HiddenCommands = []string{watchdog.Command}
	code, err := c.Run()
	if err != nil {
		ui.Error("Error: " + err.Error())
		return exitError
	}
	if code == 127 {
		// mitchellh/cli's "no such command"; ours is a usage error.
		return exitUsage
	}
	return code
}

// Commands returns every command by its name.
func Commands(m *Meta) map[string]cli.CommandFactory {
	return map[string]cli.CommandFactory{
		"version":    func() (cli.Command, error) { return &VersionCommand{Meta: m}, nil },
		"agent":      func() (cli.Command, error) { return &AgentCommand{Meta: m}, nil },
		"job":        func() (cli.Command, error) { return &GroupCommand{name: "job", synopsis: "Run and inspect jobs"}, nil },
		"job run":    func() (cli.Command, error) { return &JobRunCommand{Meta: m}, nil },
		"job status": func() (cli.Command, error) { return &JobStatusCommand{Meta: m}, nil },
		"job list":   func() (cli.Command, error) { return &JobListCommand{Meta: m}, nil },
		"job logs":   func() (cli.Command, error) { return &JobLogsCommand{Meta: m}, nil },
		"job cancel": func() (cli.Command, error) { return &JobCancelCommand{Meta: m}, nil },
		"job retry":  func() (cli.Command, error) { return &JobRetryCommand{Meta: m}, nil },
		"job delete": func() (cli.Command, error) { return &JobDeleteCommand{Meta: m}, nil },
		"job pin":    func() (cli.Command, error) { return &JobPinCommand{Meta: m}, nil },
		"job gc":     func() (cli.Command, error) { return &JobGCCommand{Meta: m}, nil },
		"project": func() (cli.Command, error) {
			return &GroupCommand{name: "project", synopsis: "Work with project files"}, nil
		},
		"project validate": func() (cli.Command, error) { return &ProjectValidateCommand{Meta: m}, nil },
		"project apply":    func() (cli.Command, error) { return &ProjectApplyCommand{Meta: m}, nil },
		"project list":     func() (cli.Command, error) { return &ProjectListCommand{Meta: m}, nil },
		"project inspect":  func() (cli.Command, error) { return &ProjectInspectCommand{Meta: m}, nil },
		"project delete":   func() (cli.Command, error) { return &ProjectDeleteCommand{Meta: m}, nil },
		"runner profile": func() (cli.Command, error) {
			return &GroupCommand{name: "runner profile", synopsis: "Runner profiles: which runners a job runs on, and how"}, nil
		},
		"runner profile set":     func() (cli.Command, error) { return &RunnerProfileSetCommand{Meta: m}, nil },
		"runner profile list":    func() (cli.Command, error) { return &RunnerProfileListCommand{Meta: m}, nil },
		"runner profile inspect": func() (cli.Command, error) { return &RunnerProfileInspectCommand{Meta: m}, nil },
		"runner profile delete":  func() (cli.Command, error) { return &RunnerProfileDeleteCommand{Meta: m}, nil },
		"members":                func() (cli.Command, error) { return &MembersCommand{Meta: m}, nil },
		"tls": func() (cli.Command, error) {
			return &GroupCommand{name: "tls", synopsis: "Create the CA and certificates of a cluster's TLS"}, nil
		},
		"tls ca": func() (cli.Command, error) {
			return &GroupCommand{name: "tls ca", synopsis: "The cluster's certificate authority"}, nil
		},
		"tls ca create": func() (cli.Command, error) { return &TLSCACreateCommand{Meta: m}, nil },
		"tls cert": func() (cli.Command, error) {
			return &GroupCommand{name: "tls cert", synopsis: "Certificates of servers, runners and clients"}, nil
		},
		"tls cert create": func() (cli.Command, error) { return &TLSCertCreateCommand{Meta: m}, nil },
		"runner": func() (cli.Command, error) {
			return &GroupCommand{name: "runner", synopsis: "Run, adopt and inspect runners"}, nil
		},
		"runner agent":   func() (cli.Command, error) { return &RunnerAgentCommand{Meta: m}, nil },
		"runner list":    func() (cli.Command, error) { return &RunnerListCommand{Meta: m}, nil },
		"runner inspect": func() (cli.Command, error) { return &RunnerInspectCommand{Meta: m}, nil },
		"runner adopt": func() (cli.Command, error) {
			return &RunnerActionCommand{Meta: m, action: "adopt", synopsis: "Approve a pending runner", help: "Adopts a pending runner (or a rejected one): it starts getting jobs."}, nil
		},
		"runner reject": func() (cli.Command, error) {
			return &RunnerActionCommand{Meta: m, action: "reject", synopsis: "Refuse a runner", help: "Rejects a runner at once: the server holding its connection closes it, it is never sent work, its jobs are requeued, and every later registration with its secret is refused."}, nil
		},
		"runner forget": func() (cli.Command, error) {
			return &RunnerActionCommand{Meta: m, action: "forget", synopsis: "Remove a runner's record", help: "Removes a runner's record. It must hold no jobs. Its id keeps a tombstone: a runner that registers that id again is pending, whatever adoption token it brings, until an operator adopts it; a secret the runner was rejected with is refused for good."}, nil
		},
		"runner drain": func() (cli.Command, error) {
			return &RunnerActionCommand{Meta: m, action: "drain", synopsis: "Stop giving a runner new jobs", help: "Drains a runner: it finishes what it runs and takes nothing new."}, nil
		},
		"runner token": func() (cli.Command, error) {
			return &GroupCommand{name: "runner token", synopsis: "Adoption tokens"}, nil
		},
		"runner token create": func() (cli.Command, error) { return &RunnerTokenCreateCommand{Meta: m}, nil },
		"runner token list":   func() (cli.Command, error) { return &RunnerTokenListCommand{Meta: m}, nil },
		"runner token revoke": func() (cli.Command, error) { return &RunnerTokenRevokeCommand{Meta: m}, nil },
		"operator": func() (cli.Command, error) {
			return &GroupCommand{name: "operator", synopsis: "Cluster administration"}, nil
		},
		"operator keygen": func() (cli.Command, error) { return &OperatorKeygenCommand{Meta: m}, nil },
		"operator gossip": func() (cli.Command, error) {
			return &GroupCommand{name: "operator gossip", synopsis: "Manage gossip encryption"}, nil
		},
		"operator gossip keyring": func() (cli.Command, error) { return &OperatorGossipKeyringCommand{Meta: m}, nil },
		"operator raft": func() (cli.Command, error) {
			return &GroupCommand{name: "operator raft", synopsis: "Inspect and change the Raft peers"}, nil
		},
		"operator raft list-peers":  func() (cli.Command, error) { return &OperatorRaftListPeersCommand{Meta: m}, nil },
		"operator raft remove-peer": func() (cli.Command, error) { return &OperatorRaftRemovePeerCommand{Meta: m}, nil },
		"operator snapshot": func() (cli.Command, error) {
			return &GroupCommand{name: "operator snapshot", synopsis: "Save, restore and inspect state snapshots"}, nil
		},
		"operator snapshot save":    func() (cli.Command, error) { return &OperatorSnapshotSaveCommand{Meta: m}, nil },
		"operator snapshot restore": func() (cli.Command, error) { return &OperatorSnapshotRestoreCommand{Meta: m}, nil },
		"operator snapshot inspect": func() (cli.Command, error) { return &OperatorSnapshotInspectCommand{Meta: m}, nil },
		watchdog.Command:            func() (cli.Command, error) { return &RunnerWatchdogCommand{Meta: m}, nil },
		"acl": func() (cli.Command, error) {
			return &GroupCommand{name: "acl", synopsis: "Access control: policies, tokens and users"}, nil
		},
		"acl bootstrap": func() (cli.Command, error) { return &ACLBootstrapCommand{Meta: m}, nil },
		"acl policy": func() (cli.Command, error) {
			return &GroupCommand{name: "acl policy", synopsis: "ACL policies: what a token may do"}, nil
		},
		"acl policy apply":  func() (cli.Command, error) { return &ACLPolicyApplyCommand{Meta: m}, nil },
		"acl policy list":   func() (cli.Command, error) { return &ACLPolicyListCommand{Meta: m}, nil },
		"acl policy info":   func() (cli.Command, error) { return &ACLPolicyInfoCommand{Meta: m}, nil },
		"acl policy delete": func() (cli.Command, error) { return &ACLPolicyDeleteCommand{Meta: m}, nil },
		"acl token": func() (cli.Command, error) {
			return &GroupCommand{name: "acl token", synopsis: "ACL tokens"}, nil
		},
		"acl token create": func() (cli.Command, error) { return &ACLTokenCreateCommand{Meta: m}, nil },
		"acl token list":   func() (cli.Command, error) { return &ACLTokenListCommand{Meta: m}, nil },
		"acl token info":   func() (cli.Command, error) { return &ACLTokenInfoCommand{Meta: m}, nil },
		"acl token revoke": func() (cli.Command, error) { return &ACLTokenRevokeCommand{Meta: m}, nil },
		"acl user": func() (cli.Command, error) {
			return &GroupCommand{name: "acl user", synopsis: "Users who log in with a password"}, nil
		},
		"acl user create": func() (cli.Command, error) { return &ACLUserCreateCommand{Meta: m}, nil },
		"acl user list":   func() (cli.Command, error) { return &ACLUserListCommand{Meta: m}, nil },
		"acl user delete": func() (cli.Command, error) { return &ACLUserDeleteCommand{Meta: m}, nil },
		"acl user passwd": func() (cli.Command, error) { return &ACLUserPasswdCommand{Meta: m}, nil },
		"login":           func() (cli.Command, error) { return &LoginCommand{Meta: m}, nil },
		"logout":          func() (cli.Command, error) { return &LogoutCommand{Meta: m}, nil },
	}
}

// GroupCommand stands for a command that only groups subcommands.
type GroupCommand struct {
	name, synopsis string
}

func (g *GroupCommand) Run([]string) int { return cli.RunResultHelp }
func (g *GroupCommand) Synopsis() string { return g.synopsis }
func (g *GroupCommand) Help() string {
	return "Usage: outpost " + g.name + " <subcommand> [options] [args]\n\n  " + g.synopsis + "."
}
