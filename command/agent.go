package command

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/agent"
)

// AgentCommand runs a server, a runner, or the dev agent.
type AgentCommand struct{ Meta *Meta }

func (c *AgentCommand) Synopsis() string { return "Run an outpost agent (server, or -dev)" }

func (c *AgentCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost agent [options]

  Runs an outpost agent. With -dev, one in-memory server and a local runner
  in one process, with no security: for trying outpost out. With -server, a
  server that keeps its state in -data-dir.

Options:

  -dev                 In-memory server plus local runner on 127.0.0.1. Not for production.
  -server              Run a server.
  -runner              Also run a runner inside this agent (for jobs aimed at the servers' network).
  -bootstrap-expect=N  Servers to wait for before electing a leader (1 in this build).
  -data-dir=DIR        Where Raft's log, snapshots and the runner's outbox live.
  -name=NAME           Node name; defaults to the hostname.
  -bind=ADDR           Address to listen on. Default 0.0.0.0 (127.0.0.1 with -dev).
  -http-port=N         HTTP/RPC port. Default 7700.
  -raft-port=N         Raft port. Default 7701.
  -label=k=v           A label of the in-agent runner; repeatable.
  -runner-capacity=N   Jobs the in-agent runner runs at once. Default 4.
  -log-level=LEVEL     trace, debug, info, warn or error. Default info.
`)
}

func (c *AgentCommand) Run(args []string) int {
	var (
		dev, server, withRunner bool
		bootstrap, httpPort     int
		raftPort, capacity      int
		dataDir, name, bind     string
		logLevel                string
		labels                  = kvFlag{}
	)
	fs := c.Meta.flagSet("agent", false)
	fs.BoolVar(&dev, "dev", false, "")
	fs.BoolVar(&server, "server", false, "")
	fs.BoolVar(&withRunner, "runner", false, "")
	fs.IntVar(&bootstrap, "bootstrap-expect", 0, "")
	fs.StringVar(&dataDir, "data-dir", "", "")
	fs.StringVar(&name, "name", "", "")
	fs.StringVar(&bind, "bind", "", "")
	fs.IntVar(&httpPort, "http-port", -1, "")
	fs.IntVar(&raftPort, "raft-port", -1, "")
	fs.IntVar(&capacity, "runner-capacity", 0, "")
	fs.StringVar(&logLevel, "log-level", "", "")
	fs.Var(labels, "label", "")
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.Meta.UI.Error("Error: agent takes no arguments")
		return exitUsage
	}

	cfg := agent.DefaultConfig()
	if dev {
		cfg = agent.DevConfig()
	}
	if server {
		cfg.Server = true
	}
	if withRunner {
		cfg.Runner = true
	}
	if bootstrap > 0 {
		cfg.BootstrapExpect = bootstrap
	} else if cfg.Server && cfg.BootstrapExpect == 0 {
		cfg.BootstrapExpect = 1
	}
	if dataDir != "" {
		cfg.DataDir = dataDir
	}
	if name != "" {
		cfg.NodeID = name
	}
	if bind != "" {
		cfg.BindAddr = bind
	}
	if httpPort >= 0 {
		cfg.Ports.HTTP = httpPort
	}
	if raftPort >= 0 {
		cfg.Ports.Raft = raftPort
	}
	if capacity > 0 {
		cfg.RunnerCapacity = capacity
	}
	if len(labels) > 0 {
		cfg.RunnerLabels = labels
	}
	if v := os.Getenv("OUTPOST_LOG_LEVEL"); v != "" && logLevel == "" {
		logLevel = v
	}
	if logLevel != "" {
		cfg.LogLevel = logLevel
	}
	level := hclog.LevelFromString(cfg.LogLevel)
	if level == hclog.NoLevel {
		c.Meta.UI.Error(fmt.Sprintf("Error: -log-level=%q: use trace, debug, info, warn or error", cfg.LogLevel))
		return exitUsage
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "outpost", Level: level, Output: c.Meta.Stderr})

	start := time.Now()
	a, err := agent.New(cfg, logger)
	if err != nil {
		c.Meta.UI.Error("Error: " + err.Error())
		return exitUsage
	}
	if err := a.Start(context.Background()); err != nil {
		c.Meta.UI.Error("Error: starting agent: " + err.Error())
		return exitError
	}
	c.banner(cfg, a, time.Since(start))

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	sig := <-sigs
	logger.Info("shutting down", "signal", sig.String())
	go func() {
		<-sigs
		logger.Warn("second signal: exiting without a clean shutdown")
		os.Exit(exitError)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "error", err)
		return exitError
	}
	return exitOK
}

func (c *AgentCommand) banner(cfg *agent.Config, a *agent.Agent, took time.Duration) {
	var b strings.Builder
	if cfg.Dev {
		b.WriteString("==> outpost DEV agent: in-memory state, no TLS, no ACLs, runner adopted automatically.\n")
		b.WriteString("==> Everything is lost when it stops. Never use -dev in production.\n")
	}
	role := "server"
	if cfg.Runner {
		role += " + runner"
	}
	fmt.Fprintf(&b, "==> outpost agent started (%s) in %s\n", role, took.Round(time.Millisecond))
	fmt.Fprintf(&b, "        Name: %s\n", cfg.NodeID)
	fmt.Fprintf(&b, "     Version: %s\n", agent.Version)
	fmt.Fprintf(&b, "    HTTP API: http://%s\n", a.HTTPAddr())
	if cfg.DataDir != "" {
		fmt.Fprintf(&b, "    Data dir: %s\n", cfg.DataDir)
	} else {
		b.WriteString("    Data dir: (in memory)\n")
	}
	if cfg.Runner {
		fmt.Fprintf(&b, "      Runner: capacity %d, labels %s\n", cfg.RunnerCapacity, kvFlag(cfg.RunnerLabels).String())
	}
	b.WriteString("==> Ready. Try: outpost job run -file examples/hello/outpost.hcl hello\n")
	fmt.Fprint(c.Meta.Stdout, b.String())
}
