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
  server that keeps its state in -data-dir and forms a Raft cluster with
  the servers it finds through -retry-join.

  Settings come from -config files (merged in order), then flags, then
  OUTPOST_* environment variables, each overriding the one before.

Options:

  -dev                 In-memory server plus local runner on 127.0.0.1. Not for production.
  -config=PATH         HCL config file or directory of *.hcl; repeatable.
  -server              Run a server.
  -runner              Also run a runner inside this agent (for jobs aimed at the servers' network).
  -bootstrap-expect=N  Servers to wait for before electing the first leader (1, 3 or 5).
  -retry-join=ADDR     Gossip address (host:port) of another server; repeatable.
  -data-dir=DIR        Where Raft's log, snapshots and the runner's outbox live.
  -name=NAME           Node name, unique in the cluster; defaults to the hostname.
  -bind=ADDR           Address to listen on. Default 0.0.0.0 (127.0.0.1 with -dev).
  -advertise=ADDR      Address other agents reach this one at. Default: the bind address.
  -http-port=N         HTTP/RPC port. Default 7700.
  -raft-port=N         Raft port. Default 7701.
  -gossip-port=N       Gossip port (TCP and UDP). Default 7702.
  -raft-multiplier=N   Scale Raft timeouts, 1 (fastest failover) to 10. Default 5.
  -encrypt=KEY         Base64 key (16/24/32 bytes) encrypting gossip; required
                       outside -dev (make one with ` + "`outpost operator keygen`" + `).
                       Also OUTPOST_ENCRYPT. After a rotation the keyring kept
                       in -data-dir wins (` + "`outpost operator gossip keyring`" + `).
  -label=k=v           A label of the in-agent runner; repeatable.
  -runner-capacity=N   Jobs the in-agent runner runs at once, 1 to 4096. Default 4.
  -log-level=LEVEL     trace, debug, info, warn or error. Default info.

TLS (required outside -dev; website/security.md):

  -ca-file=FILE        The cluster's CA certificate (outpost tls ca create). Also OUTPOST_CA_FILE.
  -cert-file=FILE      This agent's certificate: a server's (outpost tls cert create -server).
                       Also OUTPOST_CERT_FILE.
  -key-file=FILE       Its key. Also OUTPOST_KEY_FILE.
  -insecure-no-tls     Run a production agent without TLS: plain-text, unauthenticated
                       API and Raft. For benchmarks only; logs a warning banner.

  Outside -dev a server writes an audit log (audit { enabled path },
  default <data-dir>/audit/audit.log).

  SIGHUP re-reads the config files and applies what can change while
  running: the log level and the TLS certificate files (CA, certificate
  and key; new connections use them); it also reopens the audit log
  (logrotate). SIGINT or SIGTERM leave the cluster gracefully
  (a leader hands over leadership first) and stop.
`)
}

// parseFlags binds the command line to a config builder: each flag given
// sets its override field, so a flag's default never hides a file's value.
func (c *AgentCommand) parseFlags(args []string) (*agent.Builder, bool) {
	b := agent.NewBuilder(agent.CommandAgent)
	fs := c.Meta.flagSet("agent", false)
	b.AddFlags(fs)
	if !c.Meta.parse(fs, args) {
		return nil, false
	}
	if fs.NArg() > 0 {
		c.Meta.UI.Error("Error: agent takes no arguments")
		return nil, false
	}
	return b, true
}

func (c *AgentCommand) Run(args []string) int {
	b, ok := c.parseFlags(args)
	if !ok {
		return exitUsage
	}
	cfg, err := b.Build()
	if err != nil {
		c.Meta.UI.Error("Error: " + err.Error())
		return exitUsage
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "outpost", Level: hclog.LevelFromString(cfg.LogLevel), Output: c.Meta.Stderr})

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
	if cfg.InsecureNoTLS {
		logger.Warn("running without TLS (-insecure-no-tls): API, runner streams and Raft are plain-text and unauthenticated")
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	halted := a.Halted()
wait:
	for {
		select {
		case err := <-halted:
			// No Leave: the server stays a member, to come back upgraded
			// with its data.
			logger.Error("shutting down: this server cannot apply the cluster's log", "error", err)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := a.Shutdown(ctx); err != nil {
				logger.Error("shutdown", "error", err)
			}
			return exitError
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if err := a.ReopenAudit(); err != nil {
					logger.Error("reopening the audit log", "error", err)
				}
				c.reload(b, a, logger)
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			go func() {
				for s := range sigs {
					if s != syscall.SIGHUP {
						logger.Warn("second signal: exiting without a clean shutdown")
						os.Exit(exitError)
					}
				}
			}()
			break wait
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a.Leave(ctx)
	if err := a.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "error", err)
		return exitError
	}
	return exitOK
}

// reload applies what may change while running.
func (c *AgentCommand) reload(b *agent.Builder, a *agent.Agent, logger hclog.Logger) {
	cfg, err := b.Build()
	if err != nil {
		logger.Error("reload: keeping the running configuration", "error", err)
		return
	}
	level := hclog.LevelFromString(cfg.LogLevel)
	a.SetLogLevel(level)
	reloadTLS(a, logger)
	logger.Info("reloaded configuration", "log_level", level.String())
}

// reloadTLS rereads the certificate files the agent started with; a
// file that fails to load leaves the old certificates in use.
func reloadTLS(a *agent.Agent, logger hclog.Logger) {
	tc := a.TLS()
	if tc == nil {
		return
	}
	if err := a.ReloadTLS(); err != nil {
		logger.Error("reload: keeping the TLS certificates in use", "error", err)
		return
	}
	cert := tc.Certificate()
	logger.Info("reloaded TLS certificates", "serial", cert.SerialNumber.Text(16), "expires", cert.NotAfter.UTC().Format(time.RFC3339))
}

// insecureBanner is printed by a production agent run with
// -insecure-no-tls, as loud as -dev's.
const insecureBanner = `==> WARNING: -insecure-no-tls: the API, the runner streams and Raft are plain-text and
    unauthenticated: anyone who reaches these ports controls the cluster. For benchmarks
    only; set up TLS with ` + "`outpost tls ca create`" + ` (website/security.md).
`

func (c *AgentCommand) banner(cfg *agent.Config, a *agent.Agent, took time.Duration) {
	var b strings.Builder
	if cfg.Dev {
		b.WriteString("==> outpost DEV agent: in-memory state, no TLS, no ACLs, runner adopted automatically.\n")
		b.WriteString("==> Everything is lost when it stops. Never use -dev in production.\n")
	}
	var roles []string
	if cfg.Server {
		roles = append(roles, "server")
	}
	if cfg.Runner {
		roles = append(roles, "runner")
	}
	fmt.Fprintf(&b, "==> outpost agent started (%s) in %s\n", strings.Join(roles, " + "), took.Round(time.Millisecond))
	fmt.Fprintf(&b, "        Name: %s\n", cfg.NodeID)
	fmt.Fprintf(&b, "     Version: %s\n", agent.Version)
	if cfg.Server {
		fmt.Fprintf(&b, "    HTTP API: %s\n", a.URL())
		if !cfg.Dev {
			fmt.Fprintf(&b, "        Raft: port %d, bootstrap_expect %d\n", cfg.Ports.Raft, cfg.BootstrapExpect)
			fmt.Fprintf(&b, "      Gossip: port %d, encrypted %t\n", cfg.Ports.Gossip, cfg.GossipKey != "")
		}
	}
	if cfg.DataDir != "" {
		fmt.Fprintf(&b, "    Data dir: %s\n", cfg.DataDir)
	} else {
		b.WriteString("    Data dir: (in memory)\n")
	}
	if cfg.Runner {
		fmt.Fprintf(&b, "      Runner: capacity %d, labels %s\n", cfg.RunnerCapacity, kvFlag(cfg.RunnerLabels).String())
	}
	if cfg.Dev {
		b.WriteString("==> Ready. Try: outpost job run -file examples/hello/outpost.hcl hello\n")
	} else {
		if cfg.InsecureNoTLS {
			b.WriteString(insecureBanner)
		}
		switch {
		case !cfg.Server:
		case cfg.ACLEnabled:
			b.WriteString("         ACL: enabled, default deny; make the first token with `outpost acl bootstrap`\n")
		default:
			b.WriteString("==> WARNING: ACLs are disabled (acl { enabled = false }): anyone who reaches the API\n")
			b.WriteString("    controls the cluster.\n")
		}
	}
	fmt.Fprint(c.Meta.Stdout, b.String())
}
