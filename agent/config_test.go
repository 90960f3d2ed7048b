package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"unknown key", "name = \"a\"\nbogus = 1\n", `a.hcl:2:1: Unsupported argument: An argument named "bogus" is not expected here.`},
		{"unknown block key", "server {\n  enabeld = true\n}\n", `a.hcl:2:3: Unsupported argument: An argument named "enabeld" is not expected here. Did you mean "enabled"?`},
		{"wrong type", "ports {\n  http = \"x\"\n}\n", `a.hcl:2:11: Unsuitable value type: Unsuitable value: a number is required`},
		{"unknown tls key", "tls {\n  enabled = true\n}\n", `a.hcl:2:3: Unsupported argument: An argument named "enabled" is not expected here.`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("a.hcl", []byte(tc.src))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

// Files merge in order, flags override files, environment overrides all.
func TestConfigLayering(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.hcl", "name = \"from-a\"\nlog_level = \"debug\"\nserver {\n  bootstrap_expect = 3\n  retry_join = [\"10.0.0.1:7702\"]\n  raft_multiplier = 1\n  runner_timeout = \"7s\"\n}\nports {\n  http = 9000\n}\n")
	b := write("b.hcl", "name = \"from-b\"\nrunner {\n  labels = { env = \"prod\" }\n  capacity = 8\n}\n")
	files, err := LoadConfigPaths([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	for _, o := range files {
		if err := cfg.Apply(o); err != nil {
			t.Fatal(err)
		}
	}
	port := 9100
	if err := cfg.Apply(&Overrides{Ports: &PortsBlock{HTTP: &port}}); err != nil {
		t.Fatal(err)
	}
	env, err := EnvOverrides(func(k string) string {
		return map[string]string{"OUTPOST_NAME": "from-env", "OUTPOST_RETRY_JOIN": "10.0.0.2:7702,10.0.0.3:7702"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Apply(env); err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.NodeID != "from-env":
		t.Errorf("name = %q, want the environment's", cfg.NodeID)
	case cfg.LogLevel != "debug" || cfg.BootstrapExpect != 3 || cfg.RunnerTimeout != 7*time.Second:
		t.Errorf("file a's settings lost: %+v", cfg)
	case cfg.Ports.HTTP != 9100:
		t.Errorf("http port = %d, want the flag's 9100", cfg.Ports.HTTP)
	case strings.Join(cfg.RetryJoin, ",") != "10.0.0.2:7702,10.0.0.3:7702":
		t.Errorf("retry_join = %v, want the environment's", cfg.RetryJoin)
	case cfg.RunnerLabels["env"] != "prod" || cfg.RunnerCapacity != 8:
		t.Errorf("file b's runner block lost: %+v", cfg)
	case cfg.RaftTiming.HeartbeatTimeout != 200*time.Millisecond:
		t.Errorf("raft_multiplier 1 gave heartbeat timeout %v", cfg.RaftTiming.HeartbeatTimeout)
	}
}

func TestJobGCSettings(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.JobGCThreshold != 24*time.Hour || cfg.JobGCMaxFinished != 100_000 {
		t.Fatalf("defaults: job_gc_threshold %v, job_gc_max_finished %d", cfg.JobGCThreshold, cfg.JobGCMaxFinished)
	}
	for _, tc := range []struct {
		src       string
		threshold time.Duration
		max       int
		err       string
	}{
		{src: "server {\n  job_gc_threshold = \"4h\"\n  job_gc_max_finished = 20000\n}\n", threshold: 4 * time.Hour, max: 20000},
		{src: "server {\n  job_gc_threshold = \"0\"\n  job_gc_max_finished = 0\n}\n", threshold: 0, max: 0},
		{src: "server {\n  job_gc_threshold = \"10ms\"\n}\n", err: `job_gc_threshold "10ms" is not 0 (no age bound) or a duration of at least 1s`},
		{src: "server {\n  job_gc_threshold = \"a day\"\n}\n", err: `job_gc_threshold "a day"`},
		{src: "server {\n  job_gc_max_finished = -1\n}\n", err: "job_gc_max_finished must be 0 (no count bound) or more, got -1"},
	} {
		o, err := ParseConfig("a.hcl", []byte(tc.src))
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		err = cfg.Apply(o)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.src, err)
		case tc.err == "" && (cfg.JobGCThreshold != tc.threshold || cfg.JobGCMaxFinished != tc.max):
			t.Errorf("%q: threshold %v, max %d", tc.src, cfg.JobGCThreshold, cfg.JobGCMaxFinished)
		}
	}
}

// Log limits and Raft's byte bounds read as sizes, and bad ones are
// refused with the setting's name.
func TestConfigSizes(t *testing.T) {
	o, err := ParseConfig("a.hcl", []byte("runner {\n  log_head = \"512KiB\"\n  log_tail = 2097152\n  log_rate = \"64 KiB\"\n}\nserver {\n  raft_snapshot_bytes = \"8MiB\"\n  raft_trailing_bytes = \"4MB\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	if err := c.Apply(o); err != nil {
		t.Fatal(err)
	}
	if c.RunnerLogs.HeadBytes != 512<<10 || c.RunnerLogs.TailBytes != 2<<20 || c.RunnerLogs.RateBytes != 64<<10 {
		t.Errorf("runner logs %+v", c.RunnerLogs)
	}
	if c.RaftSnapshotBytes != 8<<20 || c.RaftTrailingBytes != 4<<20 {
		t.Errorf("raft bytes %d, %d", c.RaftSnapshotBytes, c.RaftTrailingBytes)
	}
	for src, want := range map[string]string{
		"runner {\n  log_head = \"lots\"\n}\n":            `config: runner log_head: "lots" is not a size: give bytes, or a number with KiB, MiB or GiB`,
		"server {\n  raft_trailing_bytes = \"1KiB\"\n}\n": `config: raft_trailing_bytes "1KiB" is not a size of at least 1MiB`,
	} {
		o, err := ParseConfig("a.hcl", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := DefaultConfig().Apply(o); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", src, err, want)
		}
	}
	c = DefaultConfig()
	c.Runner, c.RunnerLogs.TailBytes, c.InsecureNoTLS = true, 4<<20, true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "over the 4194304 bytes the servers keep") {
		t.Errorf("head and tail over the servers' limit: %v", err)
	}
}

// TestACLSettings: ACLs are on by default and off in -dev; the acl block
// turns them off and sets the login token lifetime, with its bound.
func TestACLSettings(t *testing.T) {
	if c := DefaultConfig(); !c.ACLEnabled || c.LoginTokenTTL != 24*time.Hour {
		t.Errorf("default: enabled %t, ttl %s; want on, 24h", c.ACLEnabled, c.LoginTokenTTL)
	}
	if DevConfig().ACLEnabled {
		t.Error("-dev has ACLs on")
	}
	cases := []struct {
		src     string
		enabled bool
		ttl     time.Duration
		err     string
	}{
		{"acl {\n  enabled = false\n}\n", false, 24 * time.Hour, ""},
		{"acl {\n  login_token_ttl = \"1h\"\n}\n", true, time.Hour, ""},
		{"acl {\n  login_token_ttl = \"10s\"\n}\n", true, 0, "at least 1m"},
		{"acl {\n  tokens = 1\n}\n", true, 0, "a.hcl:2:3: Unsupported argument"},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		o, err := ParseConfig("a.hcl", []byte(tc.src))
		if err == nil {
			err = c.Apply(o)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err = %v, want %q", tc.src, err, tc.err)
			}
			continue
		}
		if err != nil || c.ACLEnabled != tc.enabled || c.LoginTokenTTL != tc.ttl {
			t.Errorf("%q: enabled %t ttl %s err %v", tc.src, c.ACLEnabled, c.LoginTokenTTL, err)
		}
	}
}

// The tls { } block, its flags and environment, and the rule that a
// production agent has TLS or says -insecure-no-tls.
func TestTLSConfig(t *testing.T) {
	full := "tls {\n  ca_file = \"ca.pem\"\n  cert_file = \"s.pem\"\n  key_file = \"s-key.pem\"\n  verify_incoming = true\n  verify_server_hostname = false\n  min_version = \"tls12\"\n  domain = \"corp\"\n}\n"
	cases := []struct {
		name string
		src  string
		env  map[string]string
		dev  bool
		want func(c *Config) bool
		err  string
	}{
		{name: "every setting", src: full, want: func(c *Config) bool {
			return c.TLS.CAFile == "ca.pem" && c.TLS.CertFile == "s.pem" && c.TLS.KeyFile == "s-key.pem" && c.TLS.VerifyIncoming &&
				!c.TLS.VerifyServerHostname && c.TLS.MinVersion == "tls12" && c.TLS.Domain == "corp" && c.TLSEnabled()
		}},
		{name: "defaults", src: "tls {\n  ca_file = \"ca.pem\"\n  cert_file = \"s.pem\"\n  key_file = \"k.pem\"\n}\n", want: func(c *Config) bool {
			return c.TLS.Domain == "outpost" && c.TLS.VerifyServerHostname && !c.TLS.VerifyIncoming && c.TLS.MinVersion == ""
		}},
		{name: "environment over the file", src: full, env: map[string]string{"OUTPOST_CA_FILE": "env-ca.pem"}, want: func(c *Config) bool { return c.TLS.CAFile == "env-ca.pem" }},
		{name: "no TLS", src: "", err: "config: a production agent needs TLS"},
		{name: "dev needs none", src: "", dev: true, want: func(c *Config) bool { return !c.TLSEnabled() }},
		{name: "escape", src: "tls {\n  disable = true\n}\n", want: func(c *Config) bool { return c.InsecureNoTLS && !c.TLSEnabled() }},
		{name: "escape by environment", src: "", env: map[string]string{"OUTPOST_INSECURE_NO_TLS": "1"}, want: func(c *Config) bool { return c.InsecureNoTLS }},
		{name: "escape and files", src: "tls {\n  disable = true\n  ca_file = \"ca.pem\"\n}\n", err: "both given"},
		{name: "missing key", src: "tls {\n  ca_file = \"ca.pem\"\n  cert_file = \"s.pem\"\n}\n", err: "tls needs all of ca_file, cert_file and key_file"},
		{name: "bad min_version", src: "tls {\n  min_version = \"tls11\"\n}\n", err: `min_version "tls11": use "tls12" or "tls13"`},
		{name: "bad domain", src: "tls {\n  domain = \"a b\"\n}\n", err: `tls domain "a b" is not a DNS domain`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			if tc.dev {
				c = DevConfig()
			}
			c.Server, c.DataDir, c.BootstrapExpect = true, "/d", 1
			c.GossipKey = TestGossipKey
			o, err := ParseConfig("a.hcl", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			env, err := EnvOverrides(func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			err = c.Apply(o)
			if err == nil {
				err = c.Apply(env)
			}
			if err == nil {
				err = c.Validate()
			}
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			case !tc.want(c):
				t.Fatalf("config %+v", c.TLS)
			}
		})
	}
}
