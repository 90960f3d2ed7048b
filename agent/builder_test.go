package agent

import (
	"flag"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// file is a config file a case writes, at a path under its directory.
type file struct{ path, src string }

// buildCase runs a command line through AddFlags and Build as the
// commands do. In args and in a wanted error, "@" stands for the case's
// directory (with a trailing slash).
type buildCase struct {
	name  string
	cmd   Command
	files []file
	args  []string
	env   map[string]string
	check func(t *testing.T, c *Config)
	err   string
	// tls keeps the case's own TLS settings; without it the case runs
	// with OUTPOST_INSECURE_NO_TLS=true, as production agents need TLS
	// or that escape and these cases are about other settings.
	tls bool
}

func (tc buildCase) run(t *testing.T) (*Config, error) {
	t.Helper()
	dir := t.TempDir() + string(filepath.Separator)
	for _, f := range tc.files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBuilder(tc.cmd)
	b.Getenv = func(k string) string {
		if v, ok := tc.env[k]; ok || tc.tls || k != "OUTPOST_INSECURE_NO_TLS" {
			return v
		}
		return "true"
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	b.AddFlags(fs)
	args := make([]string, len(tc.args))
	for i, a := range tc.args {
		args[i] = strings.ReplaceAll(a, "@", dir)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	b.ConfigPaths = append([]string{baseKeyFile(t)}, b.ConfigPaths...)
	c, err := b.Build()
	if err != nil && tc.err != "" {
		return nil, &placeholderErr{strings.ReplaceAll(err.Error(), dir, "@")}
	}
	return c, err
}

type placeholderErr struct{ s string }

func (e *placeholderErr) Error() string { return e.s }

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqLabels(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("labels = %v, want %v", got, want)
	}
}

var server = []string{"-server", "-data-dir=/srv/outpost"}

func withServer(args ...string) []string { return append(slices.Clone(server), args...) }

// Each source overrides the one before: defaults, files (in order), flags
// given on the command line, OUTPOST_* environment; the same rule for
// `agent -server`, `agent -dev`, `agent -server -runner` and `runner agent`.
func TestBuildPrecedence(t *testing.T) {
	host, _ := os.Hostname()
	cases := []buildCase{
		{
			name: "server defaults",
			args: server,
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, host)
				eq(t, "bind", c.BindAddr, "0.0.0.0")
				eq(t, "ports", c.Ports, Ports{HTTP: 7700, Raft: 7701, Gossip: 7702})
				eq(t, "bootstrap_expect", c.BootstrapExpect, 1)
				eq(t, "log_level", c.LogLevel, "info")
				eq(t, "runner", c.Runner, false)
				eq(t, "heartbeat timeout", c.RaftTiming.HeartbeatTimeout, time.Second)
				eq(t, "data_dir", c.DataDir, "/srv/outpost")
			},
		},
		{
			name: "dev defaults",
			args: []string{"-dev"},
			check: func(t *testing.T, c *Config) {
				eq(t, "dev", c.Dev, true)
				eq(t, "name", c.NodeID, "dev")
				eq(t, "bind", c.BindAddr, "127.0.0.1")
				eq(t, "server", c.Server, true)
				eq(t, "runner", c.Runner, true)
				eq(t, "bootstrap_expect", c.BootstrapExpect, 1)
				eqLabels(t, c.RunnerLabels, map[string]string{"dev": "true"})
				eq(t, "heartbeat timeout", c.RaftTiming.HeartbeatTimeout, 50*time.Millisecond)
			},
		},
		{
			name: "server with a runner inside",
			args: withServer("-runner", "-label=zone=a", "-runner-capacity=2"),
			check: func(t *testing.T, c *Config) {
				eq(t, "server", c.Server, true)
				eq(t, "runner", c.Runner, true)
				eq(t, "capacity", c.RunnerCapacity, 2)
				eqLabels(t, c.RunnerLabels, map[string]string{"zone": "a"})
			},
		},
		{
			name: "runner agent defaults",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=10.0.0.1:7700"},
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, host)
				eq(t, "server", c.Server, false)
				eq(t, "runner", c.Runner, true)
				eq(t, "gossip port", c.Ports.Gossip, 0)
				eq(t, "capacity", c.RunnerCapacity, 4)
				eq(t, "log head", c.RunnerLogs, DefaultConfig().RunnerLogs)
				eqList(t, "servers", c.RunnerServers, "10.0.0.1:7700")
			},
		},
		{
			name:  "file over defaults",
			files: []file{{"a.hcl", "name = \"from-a\"\nlog_level = \"debug\"\nbind_addr = \"10.0.0.9\"\nserver {\n  bootstrap_expect = 3\n  raft_multiplier = 1\n}\nports {\n  http = 9000\n}\n"}},
			args:  withServer("-config=@a.hcl"),
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "from-a")
				eq(t, "log_level", c.LogLevel, "debug")
				eq(t, "bind", c.BindAddr, "10.0.0.9")
				eq(t, "bootstrap_expect", c.BootstrapExpect, 3)
				eq(t, "heartbeat timeout", c.RaftTiming.HeartbeatTimeout, 200*time.Millisecond)
				eq(t, "ports", c.Ports, Ports{HTTP: 9000, Raft: 7701, Gossip: 7702})
			},
		},
		{
			name: "files in the order given",
			files: []file{
				{"a.hcl", "name = \"from-a\"\nlog_level = \"debug\"\n"},
				{"b.hcl", "name = \"from-b\"\n"},
			},
			args: withServer("-config=@b.hcl", "-config=@a.hcl"),
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "from-a")
				eq(t, "log_level", c.LogLevel, "debug")
			},
		},
		{
			name: "a directory's *.hcl in name order",
			files: []file{
				{"conf/20-second.hcl", "name = \"second\"\n"},
				{"conf/10-first.hcl", "name = \"first\"\nlog_level = \"warn\"\n"},
				{"conf/notes.txt", "not HCL at all {"},
			},
			args: withServer("-config=@conf"),
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "second")
				eq(t, "log_level", c.LogLevel, "warn")
			},
		},
		{
			name:  "flag over file",
			files: []file{{"a.hcl", "name = \"from-a\"\nports {\n  http = 9000\n}\n"}},
			args:  withServer("-config=@a.hcl", "-http-port=9100", "-name=from-flag"),
			check: func(t *testing.T, c *Config) {
				eq(t, "http port", c.Ports.HTTP, 9100)
				eq(t, "name", c.NodeID, "from-flag")
			},
		},
		{
			// Where flags come on the command line does not matter: a
			// flag before -config still overrides the file.
			name:  "flag before -config still over file",
			files: []file{{"a.hcl", "log_level = \"debug\"\n"}},
			args:  withServer("-log-level=warn", "-config=@a.hcl"),
			check: func(t *testing.T, c *Config) { eq(t, "log_level", c.LogLevel, "warn") },
		},
		{
			name:  "a flag not given leaves the file's value",
			files: []file{{"a.hcl", "server {\n  bootstrap_expect = 3\n  raft_multiplier = 1\n  encrypt = \"a2V5a2V5a2V5a2V5a2V5aw==\"\n}\nports {\n  gossip = 9002\n}\n"}},
			args:  withServer("-config=@a.hcl"),
			check: func(t *testing.T, c *Config) {
				eq(t, "bootstrap_expect", c.BootstrapExpect, 3)
				eq(t, "heartbeat timeout", c.RaftTiming.HeartbeatTimeout, 200*time.Millisecond)
				eq(t, "encrypt", c.GossipKey, "a2V5a2V5a2V5a2V5a2V5aw==")
				eq(t, "gossip port", c.Ports.Gossip, 9002)
			},
		},
		{
			name:  "a flag given as its zero value still overrides",
			files: []file{{"a.hcl", "enable_debug = true\nports {\n  gossip = 9002\n}\nrunner {\n  enabled = true\n}\n"}},
			args:  withServer("-config=@a.hcl", "-gossip-port=0", "-runner=false"),
			check: func(t *testing.T, c *Config) {
				eq(t, "gossip port", c.Ports.Gossip, 0)
				eq(t, "runner", c.Runner, false)
				eq(t, "enable_debug", c.EnableDebug, true)
			},
		},
		{
			name: "environment over flag",
			args: withServer("-http-port=9100", "-name=from-flag"),
			env:  map[string]string{"OUTPOST_HTTP_PORT": "9200", "OUTPOST_NAME": "from-env"},
			check: func(t *testing.T, c *Config) {
				eq(t, "http port", c.Ports.HTTP, 9200)
				eq(t, "name", c.NodeID, "from-env")
			},
		},
		{
			name:  "environment over file",
			files: []file{{"a.hcl", "name = \"from-a\"\ndata_dir = \"/a\"\nserver {\n  bootstrap_expect = 3\n}\n"}},
			args:  []string{"-server", "-config=@a.hcl"},
			env:   map[string]string{"OUTPOST_DATA_DIR": "/env", "OUTPOST_BOOTSTRAP_EXPECT": "5"},
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "from-a")
				eq(t, "data_dir", c.DataDir, "/env")
				eq(t, "bootstrap_expect", c.BootstrapExpect, 5)
			},
		},
		{
			// The example at the top of website/agent-config.md.
			name:  "dev, file, flag and environment",
			files: []file{{"dev1.hcl", "log_level = \"warn\"\nports {\n  http = 7712\n}\n"}},
			args:  []string{"-dev", "-config", "@dev1.hcl", "-http-port", "7714"},
			env:   map[string]string{"OUTPOST_HTTP_PORT": "7713"},
			check: func(t *testing.T, c *Config) {
				eq(t, "http port", c.Ports.HTTP, 7713)
				eq(t, "log_level", c.LogLevel, "warn")
				eq(t, "dev", c.Dev, true)
			},
		},
		{
			name:  "every environment variable",
			files: []file{{"a.hcl", "name = \"from-a\"\n"}},
			args:  withServer("-config=@a.hcl", "-bind=10.0.0.1", "-advertise=10.0.0.1", "-retry-join=x:1", "-encrypt=flag"),
			env: map[string]string{
				"OUTPOST_NAME": "e", "OUTPOST_DATA_DIR": "/e", "OUTPOST_BIND_ADDR": "10.0.0.2", "OUTPOST_ADVERTISE_ADDR": "10.0.0.3",
				"OUTPOST_LOG_LEVEL": "error", "OUTPOST_BOOTSTRAP_EXPECT": "3", "OUTPOST_ENCRYPT": "ZW52ZW52ZW52ZW52ZW52ZQ==", "OUTPOST_RETRY_JOIN": "a:1,b:2",
				"OUTPOST_HTTP_PORT": "1", "OUTPOST_RAFT_PORT": "2", "OUTPOST_GOSSIP_PORT": "3",
			},
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "e")
				eq(t, "data_dir", c.DataDir, "/e")
				eq(t, "bind", c.BindAddr, "10.0.0.2")
				eq(t, "advertise", c.Advertise, "10.0.0.3")
				eq(t, "log_level", c.LogLevel, "error")
				eq(t, "bootstrap_expect", c.BootstrapExpect, 3)
				eq(t, "encrypt", c.GossipKey, "ZW52ZW52ZW52ZW52ZW52ZQ==")
				eqList(t, "retry_join", c.RetryJoin, "a:1", "b:2")
				eq(t, "ports", c.Ports, Ports{HTTP: 1, Raft: 2, Gossip: 3})
			},
		},
		{
			name:  "a list flag replaces the file's list",
			files: []file{{"a.hcl", "server {\n  retry_join = [\"f:1\", \"f:2\"]\n}\n"}},
			args:  withServer("-config=@a.hcl", "-retry-join=a:1", "-retry-join=b:1"),
			check: func(t *testing.T, c *Config) { eqList(t, "retry_join", c.RetryJoin, "a:1", "b:1") },
		},
		{
			name:  "a list in a later file replaces the earlier file's",
			files: []file{{"a.hcl", "server {\n  retry_join = [\"a:1\"]\n}\n"}, {"b.hcl", "server {\n  retry_join = [\"b:1\"]\n}\n"}},
			args:  withServer("-config=@a.hcl", "-config=@b.hcl"),
			check: func(t *testing.T, c *Config) { eqList(t, "retry_join", c.RetryJoin, "b:1") },
		},
		{
			name: "labels add up: dev, files, flags",
			files: []file{
				{"a.hcl", "runner {\n  labels = { env = \"prod\", os = \"linux\" }\n}\n"},
				{"b.hcl", "runner {\n  labels = { rack = \"r1\" }\n}\n"},
			},
			args: []string{"-dev", "-config=@a.hcl", "-config=@b.hcl", "-label=os=darwin", "-label=zone=a"},
			check: func(t *testing.T, c *Config) {
				eqLabels(t, c.RunnerLabels, map[string]string{"dev": "true", "env": "prod", "os": "darwin", "rack": "r1", "zone": "a"})
			},
		},
		{
			name:  "runner agent: labels add up as for agent",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  servers = [\"s:1\"]\n  labels = { env = \"prod\", os = \"linux\" }\n}\n"}},
			args:  []string{"-config=@r.hcl", "-label=os=darwin", "-label=zone=a"},
			check: func(t *testing.T, c *Config) {
				eqLabels(t, c.RunnerLabels, map[string]string{"env": "prod", "os": "darwin", "zone": "a"})
			},
		},
		{
			name:  "runner agent: -server replaces the file's servers, commas or repeated",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  servers = [\"f:1\", \"f:2\"]\n}\n"}},
			args:  []string{"-config=@r.hcl", "-server=a:1,b:1", "-server=c:1"},
			env:   map[string]string{"OUTPOST_ADDR": "env:1"},
			check: func(t *testing.T, c *Config) { eqList(t, "servers", c.RunnerServers, "a:1", "b:1", "c:1") },
		},
		{
			name:  "runner agent: OUTPOST_ADDR does not override the file's servers",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  servers = [\"f:1\"]\n}\n"}},
			args:  []string{"-config=@r.hcl"},
			env:   map[string]string{"OUTPOST_ADDR": "env:1"},
			check: func(t *testing.T, c *Config) { eqList(t, "servers", c.RunnerServers, "f:1") },
		},
		{
			name:  "runner agent: OUTPOST_ADDR when nothing names servers",
			cmd:   CommandRunnerAgent,
			env:   map[string]string{"OUTPOST_ADDR": "e:1,e:2"},
			check: func(t *testing.T, c *Config) { eqList(t, "servers", c.RunnerServers, "e:1", "e:2") },
		},
		{
			name:  "runner agent: OUTPOST_RUNNER_TOKEN when nothing gives a token",
			cmd:   CommandRunnerAgent,
			args:  []string{"-server=s:1"},
			env:   map[string]string{"OUTPOST_RUNNER_TOKEN": "rt_env"},
			check: func(t *testing.T, c *Config) { eq(t, "token", c.RunnerToken, "rt_env") },
		},
		{
			name:  "runner agent: a file's token over OUTPOST_RUNNER_TOKEN",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  token = \"rt_file\"\n}\n"}},
			args:  []string{"-server=s:1", "-config=@r.hcl"},
			env:   map[string]string{"OUTPOST_RUNNER_TOKEN": "rt_env"},
			check: func(t *testing.T, c *Config) { eq(t, "token", c.RunnerToken, "rt_file") },
		},
		{
			name:  "runner agent: -token over the file's",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  token = \"rt_file\"\n}\n"}},
			args:  []string{"-server=s:1", "-config=@r.hcl", "-token=rt_flag"},
			check: func(t *testing.T, c *Config) { eq(t, "token", c.RunnerToken, "rt_flag") },
		},
		{
			name:  "runner agent: a shared file's server block runs no server",
			cmd:   CommandRunnerAgent,
			files: []file{{"shared.hcl", "server {\n  enabled = true\n  encrypt = \"a2V5a2V5a2V5a2V5a2V5aw==\"\n}\nrunner {\n  enabled = false\n  servers = [\"s:1\"]\n}\n"}},
			args:  []string{"-config=@shared.hcl"},
			check: func(t *testing.T, c *Config) {
				eq(t, "server", c.Server, false)
				eq(t, "runner", c.Runner, true)
				eq(t, "encrypt", c.GossipKey, "a2V5a2V5a2V5a2V5a2V5aw==")
			},
		},
		{
			name:  "runner agent: every flag over the file",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "name = \"f\"\ndata_dir = \"/f\"\nbind_addr = \"10.0.0.1\"\nlog_level = \"warn\"\nrunner {\n  capacity = 2\n  log_head = \"512KiB\"\n  log_tail = \"2MiB\"\n}\nports {\n  gossip = 9002\n}\n"}},
			args:  []string{"-config=@r.hcl", "-server=s:1", "-name=fl", "-data-dir=/fl", "-bind=10.0.0.2", "-log-level=debug", "-capacity=3", "-log-tail=1MiB", "-log-rate=64KiB", "-gossip-port=-1"},
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "fl")
				eq(t, "data_dir", c.DataDir, "/fl")
				eq(t, "bind", c.BindAddr, "10.0.0.2")
				eq(t, "log_level", c.LogLevel, "debug")
				eq(t, "capacity", c.RunnerCapacity, 3)
				eq(t, "log head", c.RunnerLogs.HeadBytes, 512<<10)
				eq(t, "log tail", c.RunnerLogs.TailBytes, 1<<20)
				eq(t, "log rate", c.RunnerLogs.RateBytes, 64<<10)
				eq(t, "gossip port", c.Ports.Gossip, -1)
			},
		},
		{
			name: "runner agent: environment over flag",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-name=from-flag", "-gossip-port=-1"},
			env:  map[string]string{"OUTPOST_NAME": "from-env", "OUTPOST_GOSSIP_PORT": "7800"},
			check: func(t *testing.T, c *Config) {
				eq(t, "name", c.NodeID, "from-env")
				eq(t, "gossip port", c.Ports.Gossip, 7800)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.run(t)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// Bad input stops the command with the reason; the messages are the
// commands' since before the builder. HCL errors name file:line:col.
func TestBuildErrors(t *testing.T) {
	cases := []buildCase{
		{
			name:  "unknown key",
			files: []file{{"bad.hcl", "name = \"x\"\nserver {\n  enabled = true\n  boostrap_expect = 3\n}\n"}},
			args:  []string{"-config=@bad.hcl"},
			err:   `@bad.hcl:4:3: Unsupported argument: An argument named "boostrap_expect" is not expected here. Did you mean "bootstrap_expect"?`,
		},
		{
			name:  "unknown key in a directory's file",
			files: []file{{"conf/a.hcl", "name = \"x\"\n"}, {"conf/b.hcl", "\n\nbogus = 1\n"}},
			args:  withServer("-config=@conf"),
			err:   `@conf/b.hcl:3:1: Unsupported argument: An argument named "bogus" is not expected here.`,
		},
		{
			name:  "syntax error",
			files: []file{{"bad.hcl", "name = \"x\"\nports {\n  http = \n}\n"}},
			args:  withServer("-config=@bad.hcl"),
			err:   `@bad.hcl:3:10: Invalid expression: Expected the start of an expression, but found an invalid expression token.`,
		},
		{
			name:  "wrong type",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  capacity = \"many\"\n}\n"}},
			args:  []string{"-server=s:1", "-config=@r.hcl"},
			err:   `@r.hcl:2:15: Unsuitable value type: Unsuitable value: a number is required`,
		},
		{
			name:  "reserved block",
			files: []file{{"t.hcl", "telemetry {\n  enabled = true\n}\n"}},
			args:  withServer("-config=@t.hcl"),
			err:   `@t.hcl:1:11: Unsupported block: telemetry { } is reserved but not implemented in this version of outpost; remove it`,
		},
		{
			name: "missing config file",
			args: withServer("-config=@nope.hcl"),
			err:  `config: stat @nope.hcl: no such file or directory`,
		},
		{
			name:  "bad value in a file",
			files: []file{{"a.hcl", "server {\n  runner_timeout = \"1s\"\n}\n"}},
			args:  withServer("-config=@a.hcl"),
			err:   `config: runner_timeout "1s" is not a duration of at least 2s`,
		},
		{
			name: "raft multiplier out of range from a flag",
			args: withServer("-raft-multiplier=11"),
			err:  "config: raft_multiplier must be between 1 and 10, got 11",
		},
		{
			name: "environment not a number",
			args: withServer(),
			env:  map[string]string{"OUTPOST_HTTP_PORT": "abc"},
			err:  `config: OUTPOST_HTTP_PORT="abc" is not a number`,
		},
		{
			name: "flag not a number",
			args: withServer("-http-port=abc"),
			err:  `invalid value "abc" for flag -http-port: parse error`,
		},
		{
			name: "flag number out of range",
			args: withServer("-bootstrap-expect=99999999999999999999"),
			err:  `invalid value "99999999999999999999" for flag -bootstrap-expect: value out of range`,
		},
		{
			name: "bool flag not a bool",
			args: []string{"-server=maybe"},
			err:  `invalid boolean value "maybe" for -server: parse error`,
		},
		{
			name: "label flag not k=v",
			args: []string{"-dev", "-label=prod"},
			err:  `invalid value "prod" for flag -label: "prod" is not of the form key=value`,
		},
		{
			name: "label flag with a bad key",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-label=my env=prod"},
			err:  `invalid value "my env=prod" for flag -label: "my env" is not a valid label key; it must start with a letter or digit, contain only letters, digits, "_", ".", "/" and "-", and be at most 63 characters long`,
		},
		{
			name: "a runner agent flag on agent",
			args: []string{"-dev", "-capacity=3"},
			err:  "flag provided but not defined: -capacity",
		},
		{
			name: "an agent flag on runner agent",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-dev"},
			err:  "flag provided but not defined: -dev",
		},
		{
			name: "log level from a flag",
			args: []string{"-dev", "-log-level=loud"},
			err:  `log level "loud": use trace, debug, info, warn or error`,
		},
		{
			name: "log level from the environment",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1"},
			env:  map[string]string{"OUTPOST_LOG_LEVEL": "chatty"},
			err:  `log level "chatty": use trace, debug, info, warn or error`,
		},
		{
			name: "server without a data dir",
			args: []string{"-server"},
			err:  "config: a server needs -data-dir (or -dev for an in-memory one)",
		},
		{
			name: "nothing to run",
			args: []string{"-data-dir=/d"},
			err:  "config: nothing to run: use -server, -dev, or `outpost runner agent`",
		},
		{
			name:  "a file's server turned off by a flag",
			files: []file{{"a.hcl", "data_dir = \"/d\"\nserver {\n  enabled = true\n}\n"}},
			args:  []string{"-config=@a.hcl", "-server=false"},
			err:   "config: nothing to run: use -server, -dev, or `outpost runner agent`",
		},
		{
			name: "dev with more servers",
			args: []string{"-dev", "-bootstrap-expect=3"},
			err:  "config: -dev runs a single server; drop -bootstrap-expect",
		},
		{
			name: "port out of range",
			args: withServer("-raft-port=70000"),
			err:  "config: raft port 70000 is out of range",
		},
		{
			name: "runner agent without servers",
			cmd:  CommandRunnerAgent,
			args: []string{"-name=r1"},
			err:  "give the servers to connect to with -server=ADDR (or OUTPOST_ADDR)",
		},
		{
			name: "runner capacity",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-capacity=0"},
			err:  "config: runner capacity 0 is out of range; a runner runs 1 to 4096 jobs at once",
		},
		{
			name: "runner log size",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-log-head=lots"},
			err:  `config: runner log_head: "lots" is not a size: give bytes, or a number with KiB, MiB or GiB`,
		},
		{
			name:  "runner label from a file",
			cmd:   CommandRunnerAgent,
			files: []file{{"r.hcl", "runner {\n  labels = { \"has space\" = \"x\" }\n}\n"}},
			args:  []string{"-server=s:1", "-config=@r.hcl"},
			err:   `config: runner labels: "has space" is not a valid label key`,
		},
		{
			name: "runner name",
			cmd:  CommandRunnerAgent,
			args: []string{"-server=s:1", "-name=edge\n1"},
			err:  `config: name: "edge\n1" is not a valid runner name`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.run(t)
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Fatalf("error:\n got %v\nwant %s", err, tc.err)
			}
		})
	}
}

// SIGHUP builds again: the files and the environment are read anew, the
// flags of the command line apply as before, and nothing accumulates.
func TestBuildAgain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.hcl")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("log_level = \"info\"\nrunner {\n  labels = { env = \"prod\" }\n}\n")
	env := map[string]string{"OUTPOST_INSECURE_NO_TLS": "true"}
	b := NewBuilder(CommandRunnerAgent)
	b.Getenv = func(k string) string { return env[k] }
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	b.AddFlags(fs)
	if err := fs.Parse([]string{"-config=" + path, "-server=a:1,b:1", "-label=zone=a", "-name=r1", "-encrypt=" + TestGossipKey}); err != nil {
		t.Fatal(err)
	}
	first, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	write("log_level = \"debug\"\nrunner {\n  labels = { env = \"staging\" }\n}\n")
	env["OUTPOST_BIND_ADDR"] = "127.0.0.2"
	again, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "first log_level", first.LogLevel, "info")
	eq(t, "log_level", again.LogLevel, "debug")
	eq(t, "bind", again.BindAddr, "127.0.0.2")
	eq(t, "name", again.NodeID, "r1")
	eqList(t, "servers", again.RunnerServers, "a:1", "b:1")
	eqLabels(t, again.RunnerLabels, map[string]string{"env": "staging", "zone": "a"})
	eqLabels(t, first.RunnerLabels, map[string]string{"env": "prod", "zone": "a"})

	write("log_level = \"debug\"\nbogus = 1\n")
	if _, err := b.Build(); err == nil || !strings.Contains(err.Error(), "a.hcl:2:1: Unsupported argument") {
		t.Errorf("a broken file on reload: %v", err)
	}
}

// The flags the builder binds read their values as the standard library's
// flags do, and fail with the same words, so a bad flag reads as before.
func TestFlagValuesParseAsTheStandardOnes(t *testing.T) {
	for _, v := range []string{"12", "-1", "0x10", "010", "1e3", "abc", "", "99999999999999999999", " 1"} {
		std := flag.NewFlagSet("std", flag.ContinueOnError)
		std.SetOutput(io.Discard)
		want := std.Int("n", 0, "")
		wantErr := std.Parse([]string{"-n=" + v})

		var got *int
		ours := flag.NewFlagSet("ours", flag.ContinueOnError)
		ours.SetOutput(io.Discard)
		ours.Var(intFlag{&got}, "n", "")
		gotErr := ours.Parse([]string{"-n=" + v})
		switch {
		case (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()):
			t.Errorf("int %q: error %v, want %v", v, gotErr, wantErr)
		case gotErr == nil && (got == nil || *got != *want):
			t.Errorf("int %q: %v, want %d", v, got, *want)
		}
	}
	for _, args := range [][]string{{"-b"}, {"-b=true"}, {"-b=false"}, {"-b=0"}, {"-b=T"}, {"-b=yes"}, {"-b", "false"}} {
		std := flag.NewFlagSet("std", flag.ContinueOnError)
		std.SetOutput(io.Discard)
		want := std.Bool("b", false, "")
		wantErr := std.Parse(args)

		var got *bool
		ours := flag.NewFlagSet("ours", flag.ContinueOnError)
		ours.SetOutput(io.Discard)
		ours.Var(boolFlag{&got}, "b", "")
		gotErr := ours.Parse(args)
		switch {
		case (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()):
			t.Errorf("bool %q: error %v, want %v", args, gotErr, wantErr)
		case gotErr == nil && (got == nil || *got != *want):
			t.Errorf("bool %q: %v, want %t", args, got, *want)
		case gotErr == nil && ours.NArg() != std.NArg():
			t.Errorf("bool %q: %d arguments left, want %d", args, ours.NArg(), std.NArg())
		}
	}
}

// baseKeyFile is a config file, read before a case's own, that gives the
// gossip key every agent outside -dev needs: cases that are not about the
// key then need not say it, and those that are override it.
func baseKeyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.hcl")
	if err := os.WriteFile(p, []byte("server {\n  encrypt = \""+TestGossipKey+"\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
