package agent

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"

	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/runner"
)

// Version is the outpost version, set at build time with -ldflags.
var Version = "0.1.0-dev"

// Default ports (ARCHITECTURE section 5).
const (
	DefaultHTTPPort   = 7700
	DefaultRaftPort   = 7701
	DefaultGossipPort = 7702
)

// Ports are the agent's listening ports.
type Ports struct {
	HTTP   int `hcl:"http,optional"`
	Raft   int `hcl:"raft,optional"`
	Gossip int `hcl:"gossip,optional"`
}

// RaftTiming are Raft's failure-detection timeouts. The defaults suit a LAN;
// -dev uses much shorter ones so a single node leads at once.
type RaftTiming struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
}

// Config is everything an agent needs, after files, flags and environment
// have been merged.
type Config struct {
	NodeID    string
	DataDir   string
	BindAddr  string
	Advertise string
	LogLevel  string
	Dev       bool
	// EnableDebug serves /debug/pprof on the HTTP port (always on in -dev).
	EnableDebug bool

	Server          bool
	BootstrapExpect int
	RetryJoin       []string

	// GossipKey is a base64 AES key (16, 24 or 32 bytes) encrypting gossip.
	GossipKey string

	// AuditEnabled turns on the server's audit log at AuditPath, by
	// default <data_dir>/audit/audit.log (see AuditFile). On by default
	// outside -dev.
	AuditEnabled bool
	AuditPath    string

	Runner         bool
	RunnerLabels   map[string]string
	RunnerCapacity int
	RunnerServers  []string
	RunnerToken    string

	// TLS is the tls { } block; InsecureNoTLS (-insecure-no-tls) runs a
	// production agent without it, loudly.
	TLS           tlsutil.Config
	InsecureNoTLS bool

	// RunnerLogs bound each job attempt's log on the runner.
	RunnerLogs runner.LogLimits

	Ports             Ports
	RaftTiming        RaftTiming
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// RaftSnapshotBytes and RaftTrailingBytes bound the Raft log in bytes:
	// a server snapshots once its log holds both, and keeps behind a
	// snapshot only the newest entries that fit in RaftTrailingBytes
	// (and at most TrailingLogs). See agent/logstore.go.
	RaftSnapshotBytes uint64
	RaftTrailingBytes uint64
	// RunnerTimeout is how long a runner may be silent, with no stream,
	// before the leader hands its jobs back: the lease period. Every timer
	// of the runner protocol derives from it (rpc.Timings).
	RunnerTimeout time.Duration
	// StartTimeout is how long an assigned job may wait for its runner to
	// confirm the start before the leader takes the assignment back.
	StartTimeout time.Duration
	// JobGCThreshold is how long a finished job is kept, and
	// JobGCMaxFinished how many finished jobs (not pinned) at most: the
	// leader garbage-collects the oldest beyond either bound. Zero turns
	// a bound off.
	JobGCThreshold   time.Duration
	JobGCMaxFinished int

	// ACLEnabled enforces ACL tokens on every API call (the production
	// default; -dev turns it off). LoginTokenTTL is the lifetime of the
	// token `outpost login` gets.
	ACLEnabled    bool
	LoginTokenTTL time.Duration
}

// DefaultLoginTokenTTL is a day, after Itential's API keys (1440 minutes).
const DefaultLoginTokenTTL = 24 * time.Hour

// Retention defaults: a day, as most job runners keep history (Nomad
// keeps 4h), and 100,000 finished jobs, about 60 MB of state per server.
const (
	DefaultJobGCThreshold   = 24 * time.Hour
	DefaultJobGCMaxFinished = 100_000
)

// The Raft log's bounds in bytes: 16 MiB of entries at most between
// snapshots, plus what arrives while one is taken. raft-boltdb's file
// never shrinks and grows in steps of up to 16 MiB, so it stays around
// 64 MiB at most; see website/concepts.md, "How large the Raft directory
// gets". Larger bounds snapshot less often (a snapshot writes the whole
// state) for a larger raft.db.
const (
	DefaultRaftSnapshotBytes = 8 << 20
	DefaultRaftTrailingBytes = 8 << 20
)

// MinRunnerTimeout keeps the runner protocol's timers (rpc.Timings) far
// enough apart to work.
const MinRunnerTimeout = 2 * time.Second

// DefaultConfig returns the production defaults.
func DefaultConfig() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "outpost-" + randomHex(4)
	}
	return &Config{
		NodeID:            host,
		BindAddr:          "0.0.0.0",
		LogLevel:          "info",
		Ports:             Ports{HTTP: DefaultHTTPPort, Raft: DefaultRaftPort, Gossip: DefaultGossipPort},
		RaftTiming:        raftTiming(DefaultRaftMultiplier),
		SnapshotThreshold: 8192,
		SnapshotInterval:  30 * time.Second,
		TrailingLogs:      10240,
		RaftSnapshotBytes: DefaultRaftSnapshotBytes,
		RaftTrailingBytes: DefaultRaftTrailingBytes,
		RunnerLogs:        runner.DefaultLogLimits(),
		RunnerTimeout:     15 * time.Second,
		StartTimeout:      5 * time.Second,
		JobGCThreshold:    DefaultJobGCThreshold,
		JobGCMaxFinished:  DefaultJobGCMaxFinished,
		RunnerCapacity:    4,
		ACLEnabled:        true,
		LoginTokenTTL:     DefaultLoginTokenTTL,
		TLS:               tlsutil.Config{Domain: tlsutil.DefaultDomain, VerifyServerHostname: true},
		AuditEnabled:      true,
	}
}

// DefaultRaftMultiplier scales Raft's timeouts for a LAN; 1 is the fastest
// failure detection (loopback, or a very quiet LAN), 10 the most tolerant.
const DefaultRaftMultiplier = 5

// raftTiming returns Raft timeouts for a multiplier: a heartbeat timeout of
// 200ms per unit, so the default detects a dead leader within about 1-2s.
// The leader lease equals the heartbeat timeout: a shorter one made a busy
// leader step down whenever followers answered a little late.
func raftTiming(multiplier int) RaftTiming {
	unit := time.Duration(multiplier)
	return RaftTiming{
		HeartbeatTimeout:   200 * time.Millisecond * unit,
		ElectionTimeout:    200 * time.Millisecond * unit,
		LeaderLeaseTimeout: 200 * time.Millisecond * unit,
	}
}

// DevConfig returns the -dev configuration: one in-memory server on
// loopback with a local runner, timeouts cut so it is ready at once.
func DevConfig() *Config {
	c := DefaultConfig()
	c.Dev = true
	c.NodeID = "dev"
	c.BindAddr = "127.0.0.1"
	c.Server = true
	c.BootstrapExpect = 1
	c.Runner = true
	c.RunnerLabels = map[string]string{"dev": "true"}
	c.RaftTiming = RaftTiming{
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
	}
	c.RunnerTimeout = 5 * time.Second
	// -dev is open, and its banner says so.
	c.ACLEnabled = false
	// -dev is open and in memory: no audit log unless asked for.
	c.AuditEnabled = false
	return c
}

// AuditFile is where the server writes its audit log, "" when it keeps
// none.
func (c *Config) AuditFile() string {
	switch {
	case !c.Server || !c.AuditEnabled:
		return ""
	case c.AuditPath != "":
		return c.AuditPath
	case c.DataDir != "":
		return filepath.Join(c.DataDir, "audit", "audit.log")
	}
	return ""
}

// Validate checks a merged configuration.
func (c *Config) Validate() error {
	if !c.Server && !c.Runner {
		return fmt.Errorf("config: nothing to run: use -server, -dev, or `outpost runner agent`")
	}
	if c.Server && !c.Dev && c.DataDir == "" {
		return fmt.Errorf("config: a server needs -data-dir (or -dev for an in-memory one)")
	}
	if c.Server && c.BootstrapExpect < 1 {
		return fmt.Errorf("config: -bootstrap-expect must be 1 or more")
	}
	if c.Server && c.AuditEnabled && c.AuditFile() == "" {
		return fmt.Errorf("config: the audit log needs a file: set audit { path = \"...\" } or -data-dir")
	}
	if c.Dev && c.BootstrapExpect > 1 {
		return fmt.Errorf("config: -dev runs a single server; drop -bootstrap-expect")
	}
	for name, p := range map[string]int{"http": c.Ports.HTTP, "raft": c.Ports.Raft, "gossip": c.Ports.Gossip} {
		if p < 0 || p > 65535 {
			// -1 turns gossip off, which only a runner may do.
			if name == "gossip" && p == -1 && !c.Server {
				continue
			}
			return fmt.Errorf("config: %s port %d is out of range", name, p)
		}
	}
	// What a runner registers with is checked here, at start, by the
	// rules the servers apply (internal/validate): a value they would
	// refuse must stop the agent with the reason, not have its runner
	// refused at every reconnect.
	if c.Server {
		if err := validate.ServerName(c.NodeID); err != nil {
			return fmt.Errorf("config: name: %w; set another with -name", err)
		}
	}
	if c.Runner {
		if err := validate.RunnerName(c.NodeID); err != nil {
			return fmt.Errorf("config: name: %w; set another with -name", err)
		}
		if err := validate.Labels(c.RunnerLabels); err != nil {
			return fmt.Errorf("config: runner labels: %w", err)
		}
		if err := validate.Capacity(int64(c.RunnerCapacity)); err != nil {
			return fmt.Errorf("config: runner %w", err)
		}
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.Runner {
		if err := c.RunnerLogs.Validate(); err != nil {
			return fmt.Errorf("config: runner %w", err)
		}
	}
	if c.GossipKey != "" {
		if err := validate.GossipKey(c.GossipKey); err != nil {
			return fmt.Errorf("config: encrypt: %w", err)
		}
	} else if !c.Dev && (c.Server || c.Ports.Gossip != -1) {
		return fmt.Errorf("config: gossip encryption is required outside -dev: make a key once with `outpost operator keygen` and give every server and runner the same one with -encrypt=KEY (or OUTPOST_ENCRYPT, or server { encrypt = \"KEY\" })")
	}
	return nil
}

// TLSEnabled reports whether the agent's ports and clients use TLS.
func (c *Config) TLSEnabled() bool { return !c.InsecureNoTLS && c.TLS.CAFile != "" }

// errNoTLS says how to set TLS up, for a production agent of role
// (server or runner) without it.
func errNoTLS(role string) error {
	return fmt.Errorf(`config: a production agent needs TLS (tls { ca_file cert_file key_file }, or -ca-file -cert-file -key-file).
Make a CA once and a certificate per agent:
    outpost tls ca create
    outpost tls cert create -server      # for each server
    outpost tls cert create -runner      # for each runner
then give this %[1]s -ca-file=outpost-agent-ca.pem -cert-file=outpost-%[1]s-0.pem -key-file=outpost-%[1]s-0-key.pem
(website/security.md). -dev runs without TLS; -insecure-no-tls runs a production agent without it (benchmarks only)`, role)
}

func (c *Config) validateTLS() error {
	t := c.TLS
	given := t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
	switch {
	case c.InsecureNoTLS && given:
		return fmt.Errorf("config: -insecure-no-tls (tls { disable = true }) and TLS files are both given; drop one")
	case c.InsecureNoTLS || c.Dev && !given:
		return nil
	case !given && c.Server:
		return errNoTLS("server")
	case !given:
		return errNoTLS("runner")
	case t.CAFile == "" || t.CertFile == "" || t.KeyFile == "":
		return fmt.Errorf("config: tls needs all of ca_file, cert_file and key_file (-ca-file -cert-file -key-file)")
	}
	if _, err := tlsutil.ParseMinVersion(t.MinVersion); err != nil {
		return fmt.Errorf("config: tls %w", err)
	}
	return nil
}

// advertiseHost is the address other agents reach this one at: the
// advertise address, else the bind address, else (bound to every
// interface) this machine's private IP, as memberlist picks it.
func (c *Config) advertiseHost() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	if c.BindAddr != "" && c.BindAddr != "0.0.0.0" && c.BindAddr != "::" {
		return c.BindAddr
	}
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return ip
	}
	return "127.0.0.1"
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}
