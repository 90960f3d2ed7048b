package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/jobspec/hcldiag"
)

// Overrides is one source of settings: a config file, the flags (the
// Builder's flag overlay, which AddFlags binds) or the environment. Every
// field is a pointer (a list or a map: nil) so "not set" differs from
// "set to the zero value"; Apply layers sources in order with one rule,
// so a new setting is one field here and one line in Apply: a value
// replaces the one before, a list replaces the list before, and labels
// are added to the labels before, a key replacing its value.
type Overrides struct {
	Name      *string `hcl:"name,optional"`
	DataDir   *string `hcl:"data_dir,optional"`
	BindAddr  *string `hcl:"bind_addr,optional"`
	Advertise *string `hcl:"advertise_addr,optional"`
	LogLevel  *string `hcl:"log_level,optional"`
	// EnableDebug serves Go's pprof endpoints on the HTTP port.
	EnableDebug *bool          `hcl:"enable_debug,optional"`
	Server      *ServerBlock   `hcl:"server,block"`
	Runner      *RunnerBlock   `hcl:"runner,block"`
	Ports       *PortsBlock    `hcl:"ports,block"`
	TLS         *TLSBlock      `hcl:"tls,block"`
	ACL         *ACLBlock      `hcl:"acl,block"`
	Telemetry   *hclBodyIgnore `hcl:"telemetry,block"`
	Audit       *AuditBlock    `hcl:"audit,block"`
}

// AuditBlock is `audit { … }`: the server's audit log (website/audit.md).
type AuditBlock struct {
	Enabled *bool   `hcl:"enabled,optional"`
	Path    *string `hcl:"path,optional"`
}

// hclBodyIgnore reserves a block whose settings later versions define.
type hclBodyIgnore struct {
	Remain hcl.Body `hcl:",remain"`
}

// ServerBlock is `server { … }`.
type ServerBlock struct {
	Enabled         *bool    `hcl:"enabled,optional"`
	BootstrapExpect *int     `hcl:"bootstrap_expect,optional"`
	RetryJoin       []string `hcl:"retry_join,optional"`
	RaftMultiplier  *int     `hcl:"raft_multiplier,optional"`
	Encrypt         *string  `hcl:"encrypt,optional"`
	RunnerTimeout   *string  `hcl:"runner_timeout,optional"`
	StartTimeout    *string  `hcl:"start_timeout,optional"`
	// Raft snapshotting: after how many new entries, checked how often,
	// and how many entries are kept behind a snapshot for followers that
	// lag a little.
	SnapshotThreshold *int    `hcl:"raft_snapshot_threshold,optional"`
	SnapshotInterval  *string `hcl:"raft_snapshot_interval,optional"`
	TrailingLogs      *int    `hcl:"raft_trailing_logs,optional"`
	// Retention of finished jobs: by age and by count, "0" turning a
	// bound off.
	JobGCThreshold   *string `hcl:"job_gc_threshold,optional"`
	JobGCMaxFinished *int    `hcl:"job_gc_max_finished,optional"`
	// The same in bytes, which is what bounds the Raft directory.
	SnapshotBytes *string `hcl:"raft_snapshot_bytes,optional"`
	TrailingBytes *string `hcl:"raft_trailing_bytes,optional"`
}

// RunnerBlock is `runner { … }`.
type RunnerBlock struct {
	Enabled  *bool             `hcl:"enabled,optional"`
	Servers  []string          `hcl:"servers,optional"`
	Labels   map[string]string `hcl:"labels,optional"`
	Capacity *int              `hcl:"capacity,optional"`
	Token    *string           `hcl:"token,optional"`
	// Each job attempt's log: the first and last bytes kept, and the
	// bytes per second sent live (sizes such as "1MiB").
	LogHead *string `hcl:"log_head,optional"`
	LogTail *string `hcl:"log_tail,optional"`
	LogRate *string `hcl:"log_rate,optional"`
}

// ACLBlock is `acl { … }`.
type ACLBlock struct {
	Enabled       *bool   `hcl:"enabled,optional"`
	LoginTokenTTL *string `hcl:"login_token_ttl,optional"`
}

// TLSBlock is `tls { … }` (website/security.md). Disable is the
// -insecure-no-tls escape, for benchmarks and trusted test networks.
type TLSBlock struct {
	Disable              *bool   `hcl:"disable,optional"`
	CAFile               *string `hcl:"ca_file,optional"`
	CertFile             *string `hcl:"cert_file,optional"`
	KeyFile              *string `hcl:"key_file,optional"`
	VerifyIncoming       *bool   `hcl:"verify_incoming,optional"`
	VerifyServerHostname *bool   `hcl:"verify_server_hostname,optional"`
	MinVersion           *string `hcl:"min_version,optional"`
	Domain               *string `hcl:"domain,optional"`
}

// PortsBlock is `ports { … }`.
type PortsBlock struct {
	HTTP   *int `hcl:"http,optional"`
	Raft   *int `hcl:"raft,optional"`
	Gossip *int `hcl:"gossip,optional"`
}

// LoadConfigPaths reads each path (a file, or a directory whose *.hcl files
// are read in name order) into Overrides, in order.
func LoadConfigPaths(paths []string) ([]*Overrides, error) {
	var out []*Overrides
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		files := []string{p}
		if info.IsDir() {
			matches, err := filepath.Glob(filepath.Join(p, "*.hcl"))
			if err != nil {
				return nil, fmt.Errorf("config: %w", err)
			}
			sort.Strings(matches)
			files = matches
		}
		for _, f := range files {
			o, err := LoadConfigFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
	}
	return out, nil
}

// LoadConfigFile parses one agent config file. Unknown keys are errors that
// name file:line:col.
func LoadConfigFile(path string) (*Overrides, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, src)
}

// ParseConfig parses agent config source.
func ParseConfig(filename string, src []byte) (*Overrides, error) {
	f, diags := hclparse.NewParser().ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	o := &Overrides{}
	if diags := gohcl.DecodeBody(f.Body, nil, o); diags.HasErrors() {
		return nil, hcldiag.Error(diags)
	}
	// Settings that look like security must not be silently ignored.
	for name, b := range map[string]*hclBodyIgnore{"telemetry": o.Telemetry} {
		if b == nil {
			continue
		}
		r := b.Remain.MissingItemRange()
		return nil, fmt.Errorf("%s:%d:%d: Unsupported block: %s { } is reserved but not implemented in this version of outpost; remove it",
			r.Filename, r.Start.Line, r.Start.Column, name)
	}
	return o, nil
}

// Apply layers o over c.
func (c *Config) Apply(o *Overrides) error {
	if o == nil {
		return nil
	}
	setS(&c.NodeID, o.Name)
	setS(&c.DataDir, o.DataDir)
	setS(&c.BindAddr, o.BindAddr)
	setS(&c.Advertise, o.Advertise)
	setS(&c.LogLevel, o.LogLevel)
	setB(&c.EnableDebug, o.EnableDebug)
	if s := o.Server; s != nil {
		setB(&c.Server, s.Enabled)
		setI(&c.BootstrapExpect, s.BootstrapExpect)
		if s.RetryJoin != nil {
			// Copies: a Builder applies the same flag overlay at every
			// Build, and a Config must not share its lists.
			c.RetryJoin = slices.Clone(s.RetryJoin)
		}
		if s.RaftMultiplier != nil {
			if *s.RaftMultiplier < 1 || *s.RaftMultiplier > 10 {
				return fmt.Errorf("config: raft_multiplier must be between 1 and 10, got %d", *s.RaftMultiplier)
			}
			c.RaftTiming = raftTiming(*s.RaftMultiplier)
		}
		setS(&c.GossipKey, s.Encrypt)
		if s.SnapshotThreshold != nil {
			if *s.SnapshotThreshold < 16 {
				return fmt.Errorf("config: raft_snapshot_threshold must be at least 16")
			}
			c.SnapshotThreshold = uint64(*s.SnapshotThreshold)
		}
		if s.TrailingLogs != nil {
			if *s.TrailingLogs < 0 {
				return fmt.Errorf("config: raft_trailing_logs must not be negative")
			}
			c.TrailingLogs = uint64(*s.TrailingLogs)
		}
		for _, b := range []struct {
			name string
			v    *string
			dst  *uint64
			min  uint64
		}{
			{"raft_snapshot_bytes", s.SnapshotBytes, &c.RaftSnapshotBytes, 1 << 20},
			{"raft_trailing_bytes", s.TrailingBytes, &c.RaftTrailingBytes, 1 << 20},
		} {
			if b.v == nil {
				continue
			}
			n, err := ParseSize(*b.v)
			if err != nil || uint64(n) < b.min {
				return fmt.Errorf("config: %s %q is not a size of at least 1MiB", b.name, *b.v)
			}
			*b.dst = uint64(n)
		}
		if s.SnapshotInterval != nil {
			d, err := time.ParseDuration(*s.SnapshotInterval)
			if err != nil || d < 100*time.Millisecond {
				return fmt.Errorf("config: raft_snapshot_interval %q is not a duration of at least 100ms", *s.SnapshotInterval)
			}
			c.SnapshotInterval = d
		}
		if s.RunnerTimeout != nil {
			d, err := time.ParseDuration(*s.RunnerTimeout)
			if err != nil || d < MinRunnerTimeout {
				return fmt.Errorf("config: runner_timeout %q is not a duration of at least %s", *s.RunnerTimeout, MinRunnerTimeout)
			}
			c.RunnerTimeout = d
		}
		if s.JobGCThreshold != nil {
			d, err := time.ParseDuration(*s.JobGCThreshold)
			if err != nil || d < 0 || (d > 0 && d < time.Second) {
				return fmt.Errorf("config: job_gc_threshold %q is not 0 (no age bound) or a duration of at least 1s", *s.JobGCThreshold)
			}
			c.JobGCThreshold = d
		}
		if s.JobGCMaxFinished != nil {
			if *s.JobGCMaxFinished < 0 {
				return fmt.Errorf("config: job_gc_max_finished must be 0 (no count bound) or more, got %d", *s.JobGCMaxFinished)
			}
			c.JobGCMaxFinished = *s.JobGCMaxFinished
		}
		if s.StartTimeout != nil {
			d, err := time.ParseDuration(*s.StartTimeout)
			if err != nil || d < 100*time.Millisecond {
				return fmt.Errorf("config: start_timeout %q is not a duration of at least 100ms", *s.StartTimeout)
			}
			c.StartTimeout = d
		}
	}
	if a := o.Audit; a != nil {
		setB(&c.AuditEnabled, a.Enabled)
		setS(&c.AuditPath, a.Path)
	}
	if r := o.Runner; r != nil {
		setB(&c.Runner, r.Enabled)
		if r.Servers != nil {
			c.RunnerServers = slices.Clone(r.Servers)
		}
		for k, v := range r.Labels {
			if c.RunnerLabels == nil {
				c.RunnerLabels = map[string]string{}
			}
			c.RunnerLabels[k] = v
		}
		setI(&c.RunnerCapacity, r.Capacity)
		setS(&c.RunnerToken, r.Token)
		for _, b := range []struct {
			name string
			v    *string
			dst  *int
		}{
			{"log_head", r.LogHead, &c.RunnerLogs.HeadBytes},
			{"log_tail", r.LogTail, &c.RunnerLogs.TailBytes},
			{"log_rate", r.LogRate, &c.RunnerLogs.RateBytes},
		} {
			if b.v == nil {
				continue
			}
			n, err := ParseSize(*b.v)
			if err != nil {
				return fmt.Errorf("config: runner %s: %w", b.name, err)
			}
			*b.dst = int(n)
		}
	}
	if a := o.ACL; a != nil {
		setB(&c.ACLEnabled, a.Enabled)
		if a.LoginTokenTTL != nil {
			d, err := time.ParseDuration(*a.LoginTokenTTL)
			if err != nil || d < time.Minute {
				return fmt.Errorf("config: acl login_token_ttl %q is not a duration of at least 1m", *a.LoginTokenTTL)
			}
			c.LoginTokenTTL = d
		}
	}
	if t := o.TLS; t != nil {
		setB(&c.InsecureNoTLS, t.Disable)
		setS(&c.TLS.CAFile, t.CAFile)
		setS(&c.TLS.CertFile, t.CertFile)
		setS(&c.TLS.KeyFile, t.KeyFile)
		setB(&c.TLS.VerifyIncoming, t.VerifyIncoming)
		setB(&c.TLS.VerifyServerHostname, t.VerifyServerHostname)
		if t.MinVersion != nil {
			if _, err := tlsutil.ParseMinVersion(*t.MinVersion); err != nil {
				return fmt.Errorf("config: tls %w", err)
			}
			c.TLS.MinVersion = *t.MinVersion
		}
		if t.Domain != nil {
			if *t.Domain == "" || strings.ContainsAny(*t.Domain, " /") {
				return fmt.Errorf("config: tls domain %q is not a DNS domain", *t.Domain)
			}
			c.TLS.Domain = *t.Domain
		}
	}
	if p := o.Ports; p != nil {
		setI(&c.Ports.HTTP, p.HTTP)
		setI(&c.Ports.Raft, p.Raft)
		setI(&c.Ports.Gossip, p.Gossip)
	}
	return nil
}

func setS(dst *string, v *string) {
	if v != nil {
		*dst = *v
	}
}

func setI(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

func setB(dst *bool, v *bool) {
	if v != nil {
		*dst = *v
	}
}

// EnvOverrides reads the OUTPOST_* variables that override settings. They
// win over files and flags, so an orchestrator can adjust one setting
// without rewriting either. (OUTPOST_ADDR and OUTPOST_RUNNER_TOKEN are
// defaults instead; see Builder.Build.)
func EnvOverrides(getenv func(string) string) (*Overrides, error) {
	o := &Overrides{Server: &ServerBlock{}, Ports: &PortsBlock{}, TLS: &TLSBlock{}}
	str := func(name string) *string {
		if v := getenv(name); v != "" {
			return &v
		}
		return nil
	}
	var err error
	num := func(name string) *int {
		v := getenv(name)
		if v == "" {
			return nil
		}
		n, e := strconv.Atoi(v)
		if e != nil && err == nil {
			err = fmt.Errorf("config: %s=%q is not a number", name, v)
		}
		return &n
	}
	o.Name = str("OUTPOST_NAME")
	o.DataDir = str("OUTPOST_DATA_DIR")
	o.BindAddr = str("OUTPOST_BIND_ADDR")
	o.Advertise = str("OUTPOST_ADVERTISE_ADDR")
	o.LogLevel = str("OUTPOST_LOG_LEVEL")
	o.Server.BootstrapExpect = num("OUTPOST_BOOTSTRAP_EXPECT")
	o.Server.Encrypt = str("OUTPOST_ENCRYPT")
	if v := getenv("OUTPOST_RETRY_JOIN"); v != "" {
		o.Server.RetryJoin = strings.Split(v, ",")
	}
	o.TLS.CAFile = str("OUTPOST_CA_FILE")
	o.TLS.CertFile = str("OUTPOST_CERT_FILE")
	o.TLS.KeyFile = str("OUTPOST_KEY_FILE")
	if v := getenv("OUTPOST_INSECURE_NO_TLS"); v != "" {
		b, e := strconv.ParseBool(v)
		if e != nil && err == nil {
			err = fmt.Errorf("config: OUTPOST_INSECURE_NO_TLS=%q is not true or false", v)
		}
		o.TLS.Disable = &b
	}
	o.Ports.HTTP = num("OUTPOST_HTTP_PORT")
	o.Ports.Raft = num("OUTPOST_RAFT_PORT")
	o.Ports.Gossip = num("OUTPOST_GOSSIP_PORT")
	return o, err
}

// ParseSize reads a size in bytes: a number, optionally followed by B,
// KiB, MiB or GiB (1024-based; KB, MB and GB mean the same).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size: give bytes, or a number with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}
