package agent

import (
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Command is the command an agent's configuration is built for. The two
// agent commands take different flags (AddFlags) and start from
// different defaults; everything else about their configuration is one
// path.
type Command int

const (
	// CommandAgent is `outpost agent`: a server (-server), the dev agent
	// (-dev), or a server with a runner inside (-server -runner).
	CommandAgent Command = iota
	// CommandRunnerAgent is `outpost runner agent`: a runner on its own.
	CommandRunnerAgent
)

// Builder builds an agent's Config from its sources, each overriding the
// one before (website/agent-config.md states the same rule):
//
//  1. the defaults: DefaultConfig, or DevConfig with -dev; a runner
//     agent's gossip member takes any free port;
//  2. the config files and directories of -config, in the order given;
//  3. the flags given on the command line (Flags);
//  4. the OUTPOST_* environment variables (EnvOverrides), so an
//     orchestrator can change one setting without touching files or
//     flags.
//
// Every source is an Overrides and goes through Config.Apply, so a
// setting means the same and is checked the same whichever source gives
// it, and a new one is a field of Overrides and a line of Apply.
//
// Build may run again (on SIGHUP): it rereads the files and the
// environment and applies the same flags over them.
type Builder struct {
	Command Command
	// Dev starts from DevConfig (-dev, `outpost agent` only).
	Dev bool
	// ConfigPaths are -config's files and directories.
	ConfigPaths []string
	// Flags is the flag overlay: AddFlags binds each flag to its field,
	// and a field stays nil unless its flag is given.
	Flags Overrides
	// Getenv reads the environment; nil reads the process's.
	Getenv func(string) string
}

// NewBuilder returns a builder for cmd's configuration; AddFlags binds
// the command line to it.
func NewBuilder(cmd Command) *Builder { return &Builder{Command: cmd} }

// Build layers the sources, applies the command's fixed rules and checks
// the result, so that a configuration it returns is one Config.Validate
// accepts. Errors are the user's to fix and say how.
func (b *Builder) Build() (*Config, error) {
	getenv := b.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := DefaultConfig()
	switch {
	case b.Command == CommandRunnerAgent:
		// Any free port, so several runners can share a host.
		cfg.Ports.Gossip = 0
	case b.Dev:
		cfg = DevConfig()
	}
	files, err := LoadConfigPaths(b.ConfigPaths)
	if err != nil {
		return nil, err
	}
	env, err := EnvOverrides(getenv)
	if err != nil {
		return nil, err
	}
	for _, o := range append(append(files, &b.Flags), env) {
		if err := cfg.Apply(o); err != nil {
			return nil, err
		}
	}
	switch b.Command {
	case CommandAgent:
		if cfg.Server && cfg.BootstrapExpect == 0 {
			cfg.BootstrapExpect = 1
		}
	case CommandRunnerAgent:
		// Whatever a shared file's server { } or runner { enabled } says.
		cfg.Server, cfg.Runner = false, true
	}
	// OUTPOST_ADDR and OUTPOST_RUNNER_TOKEN are defaults, not overrides:
	// OUTPOST_ADDR is also the CLI's server address (as -address falls
	// back to it), and a shell that exports it for the CLI must not
	// redirect a runner whose file or flags name its servers.
	if len(cfg.RunnerServers) == 0 {
		if v := getenv("OUTPOST_ADDR"); v != "" {
			cfg.RunnerServers = strings.Split(v, ",")
		}
	}
	if cfg.RunnerToken == "" {
		cfg.RunnerToken = getenv("OUTPOST_RUNNER_TOKEN")
	}
	if b.Command == CommandRunnerAgent && len(cfg.RunnerServers) == 0 {
		return nil, fmt.Errorf("give the servers to connect to with -server=ADDR (or OUTPOST_ADDR)")
	}
	if hclog.LevelFromString(cfg.LogLevel) == hclog.NoLevel {
		return nil, fmt.Errorf("log level %q: use trace, debug, info, warn or error", cfg.LogLevel)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}
