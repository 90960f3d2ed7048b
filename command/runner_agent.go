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

// RunnerAgentCommand runs a runner on an edge node.
type RunnerAgentCommand struct{ Meta *Meta }

func (c *RunnerAgentCommand) Synopsis() string { return "Run a runner agent on this machine" }

func (c *RunnerAgentCommand) Help() string {
	return strings.TrimSpace(`
Usage: outpost runner agent [options]

  Runs a runner: it opens one outbound connection to a server (trying the
  listed servers in turn, reconnecting with backoff) and runs the jobs the
  cluster assigns to it. Servers never connect to a runner.

  A new runner registers as pending and gets no work until an operator runs
  ` + "`outpost runner adopt ID`" + `, or it starts with a token from
  ` + "`outpost runner token create`" + `. Its identity and the results not yet
  delivered live in -data-dir; keep it across restarts.

  Settings come from -config files (merged in order), then flags, then
  OUTPOST_* environment variables, each overriding the one before.

Options:

  -server=ADDR[,ADDR…]  Server API addresses; repeatable. Also OUTPOST_ADDR.
  -name=NAME            Display name: letters, digits, "_", "." and "-".
                        Default: the hostname.
  -label=k=v            A label profiles can target; repeatable. Keys hold
                        letters, digits, "_", ".", "/" and "-"; values also
                        ":", "@" and "+", or are empty.
  -capacity=N           Jobs run at once, 1 to 4096. Default 4.
  -data-dir=DIR         Identity, outbox and job directories. Without it the
                        runner is new (and pending) at every start.
  -token=TOKEN          Adoption token. Also OUTPOST_RUNNER_TOKEN.
  -encrypt=KEY          The cluster's gossip key; required unless
                        -gossip-port=-1. Also OUTPOST_ENCRYPT. The keyring the
                        servers send is kept in -data-dir and wins after a
                        rotation.
  -gossip-port=N        Join the gossip pool on this port (0: any free port,
                        -1: do not join). Default 0.
  -bind=ADDR            Address for gossip. Default 0.0.0.0.
  -config=PATH          HCL config file with a runner { } block; repeatable.
  -log-level=LEVEL      trace, debug, info, warn or error. Default info.

TLS (required; website/security.md):

  -ca-file=FILE         The cluster's CA certificate. Also OUTPOST_CA_FILE.
  -cert-file=FILE       This runner's certificate (outpost tls cert create -runner).
                        Also OUTPOST_CERT_FILE. Servers take runner streams only
                        with a runner.<domain> certificate.
  -key-file=FILE        Its key. Also OUTPOST_KEY_FILE.
  -insecure-no-tls      Connect without TLS (to servers run with -insecure-no-tls).
                        For benchmarks only.

  SIGHUP re-reads the certificate files; new connections use them.

Job logs (sizes in bytes, or with KiB, MiB, GiB):

  -log-head=SIZE        The first output of each job attempt kept whole. Default 1MiB.
  -log-tail=SIZE        The last output kept whole. Default 3MiB. Head and tail
                        together are at most 4MiB, what the servers keep; the
                        output between them is left out, and a line says how much.
  -log-rate=SIZE        Output sent live per job and second, on average.
                        Default 128KiB. What a job prints faster is left out of
                        the live log (the tail is complete once the job ends).
`)
}

func (c *RunnerAgentCommand) Run(args []string) int {
	b := agent.NewBuilder(agent.CommandRunnerAgent)
	fs := c.Meta.flagSet("runner agent", false)
	b.AddFlags(fs)
	if !c.Meta.parse(fs, args) {
		return exitUsage
	}
	if fs.NArg() > 0 {
		c.Meta.UI.Error("Error: runner agent takes no arguments")
		return exitUsage
	}
	// Before anything is logged: a setting the servers would refuse ends
	// the command here, with the reason, as a usage error.
	cfg, err := b.Build()
	if err != nil {
		c.Meta.UI.Error("Error: " + err.Error())
		return exitUsage
	}
	level := hclog.LevelFromString(cfg.LogLevel)
	logger := hclog.New(&hclog.LoggerOptions{Name: "outpost", Level: level, Output: c.Meta.Stderr})
	if cfg.DataDir == "" {
		logger.Warn("no -data-dir: this runner gets a new identity at every start and keeps undelivered results only in memory")
	}

	a, err := agent.New(cfg, logger)
	if err != nil {
		c.Meta.UI.Error("Error: " + err.Error())
		return exitUsage
	}
	if err := a.Start(context.Background()); err != nil {
		c.Meta.UI.Error("Error: starting runner: " + err.Error())
		return exitError
	}
	a.Runner().ReturnMemoryWhenIdle(runnerIdleTrim)
	fmt.Fprintf(c.Meta.Stdout, "==> outpost runner %s started\n        Name: %s\n     Servers: %s\n    Capacity: %d\n      Labels: %s\n",
		a.Runner().ID(), cfg.NodeID, strings.Join(cfg.RunnerServers, ", "), cfg.RunnerCapacity, kvFlag(cfg.RunnerLabels).String())

	if cfg.InsecureNoTLS {
		fmt.Fprint(c.Meta.Stdout, insecureBanner)
		logger.Warn("running without TLS (-insecure-no-tls): the stream to the servers is plain-text and unauthenticated")
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	sig := <-sigs
	for sig == syscall.SIGHUP {
		reloadTLS(a, logger)
		sig = <-sigs
	}
	logger.Info("shutting down: running jobs are stopped and their results kept in the outbox", "signal", sig.String())
	go func() {
		for s := range sigs {
			if s != syscall.SIGHUP {
				os.Exit(exitError)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "error", err)
		return exitError
	}
	return exitOK
}

// runnerIdleTrim is how long a runner agent must have had no job before it
// returns the memory its jobs used to the operating system (see
// runner.ReturnMemoryWhenIdle): after one job printing 20,000 lines, an
// idle runner without gossip measured 26.5 MB RSS without the trim.
const runnerIdleTrim = 10 * time.Second
