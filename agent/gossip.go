package agent

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Roles carried in gossip metadata.
const (
	RoleServer = "server"
	RoleRunner = "runner"
)

// NodeMeta is what every gossip member says about itself. Keys are short:
// memberlist caps metadata at 512 bytes.
type NodeMeta struct {
	Role            string `json:"r"`
	HTTP            string `json:"h,omitempty"`
	Raft            string `json:"ra,omitempty"`
	BootstrapExpect int    `json:"e,omitempty"`
	// Bootstrapped is set once this server has seen a Raft leader, so a
	// newcomer with -bootstrap-expect joins instead of bootstrapping anew.
	Bootstrapped bool `json:"b,omitempty"`
	// Leaving is announced just before a graceful leave: memberlist's leave
	// event does not say whether a member left or failed, and the leader
	// removes only the former from Raft.
	Leaving  bool              `json:"x,omitempty"`
	Version  string            `json:"v,omitempty"`
	Capacity int               `json:"c,omitempty"`
	Labels   map[string]string `json:"l,omitempty"`
	// Keys are the fingerprints (KeyFingerprint) of the gossip keys this
	// member holds, for `operator gossip keyring -list`.
	Keys []string `json:"k,omitempty"`
}

// DecodeMeta parses a member's metadata; members that are not outpost
// agents decode to an empty role.
func DecodeMeta(b []byte) NodeMeta {
	var m NodeMeta
	_ = json.Unmarshal(b, &m)
	return m
}

// Gossip is the agent's membership in the memberlist pool.
type Gossip struct {
	logger hclog.Logger
	list   *memberlist.Memberlist
	// keyring is the member's gossip keyring; nil when gossip is not
	// encrypted.
	keyring *memberlist.Keyring

	mu   sync.Mutex
	meta NodeMeta
	// known keeps every member ever seen with its last state: memberlist
	// itself lists only live ones, but an operator wants to see the dead,
	// and the leader acts on those that left.
	known map[string]Member

	// events receives a value on every join, leave or update, coalesced.
	events chan struct{}
}

// GossipConfig configures the pool membership.
type GossipConfig struct {
	Name      string
	BindAddr  string
	Advertise string
	Port      int
	Key       string
	// DataDir holds the keyring last applied (keyring.go); it wins over
	// Key, which may be a key rotated out since. Empty: Key alone.
	DataDir string
	Meta    NodeMeta
	// Fast selects loopback/LAN-friendly probe timings (tests, dev).
	Fast   bool
	Logger hclog.Logger
}

// StartGossip joins no one yet; Join and RetryJoin do.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	g := &Gossip{logger: cfg.Logger.Named("gossip"), meta: cfg.Meta, events: make(chan struct{}, 1), known: map[string]Member{}}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 500 * time.Millisecond
		mc.ProbeTimeout = 250 * time.Millisecond
		mc.GossipInterval = 100 * time.Millisecond
		mc.SuspicionMult = 3
	}
	kr, keys, err := newKeyring(cfg.DataDir, cfg.Key)
	if err != nil {
		return nil, err
	}
	if kr != nil {
		mc.Keyring, g.keyring = kr, kr
		g.meta.Keys = fingerprints(keys)
	}
	bind := cfg.BindAddr
	if bind == "" {
		bind = "0.0.0.0"
	}
	t, err := newGossipTransport(bind, cfg.Port, g.logger)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s: %w", net.JoinHostPort(bind, strconv.Itoa(cfg.Port)), err)
	}
	mc.Transport = t
	// Compressing a message builds a fresh 64 KB LZW table, and idle
	// members gossip several times a second: that garbage alone made an
	// idle runner collect every two seconds and hold a megabyte more. On
	// a LAN the bytes saved are few: probes are already small, and the
	// push/pull exchange of full state is one TCP stream every 15-30 s.
	// Peers that compress still interoperate: receiving is unaffected.
	mc.EnableCompression = false
	mc.Name = cfg.Name
	mc.BindAddr = bind
	mc.BindPort = t.port()
	if cfg.Advertise != "" {
		mc.AdvertiseAddr = cfg.Advertise
		mc.AdvertisePort = t.port()
	}
	mc.Delegate = g
	mc.Events = g
	mc.Logger = g.logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	list, err := memberlist.Create(mc)
	if err != nil {
		_ = t.Shutdown()
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.list = list
	return g, nil
}

// Events fires (coalesced) whenever membership changes.
func (g *Gossip) Events() <-chan struct{} { return g.events }

func (g *Gossip) notify() {
	select {
	case g.events <- struct{}{}:
	default:
	}
}

// Join contacts the given gossip addresses once.
func (g *Gossip) Join(addrs []string) (int, error) { return g.list.Join(addrs) }

// Alive counts the members memberlist believes alive, this one included.
func (g *Gossip) Alive() int { return g.list.NumMembers() }

// RetryJoin keeps trying to join addrs until another member answers or stop
// closes. Reaching only itself (a -retry-join that lists this server) does
// not count.
func (g *Gossip) RetryJoin(addrs []string, stop <-chan struct{}) {
	if len(addrs) == 0 {
		return
	}
	delay := 250 * time.Millisecond
	for {
		n, err := g.list.Join(addrs)
		if n > 0 && g.list.NumMembers() > 1 {
			g.logger.Info("joined the gossip pool", "contacted", n, "members", g.list.NumMembers())
			return
		}
		if err == nil {
			err = fmt.Errorf("only this server answered")
		}
		g.logger.Warn("join failed; retrying", "addresses", addrs, "error", err, "retry_in", delay)
		select {
		case <-stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// SetBootstrapped marks this server as part of a formed cluster.
func (g *Gossip) SetBootstrapped() {
	g.mu.Lock()
	// Once leaving, publish nothing more: a later update would replace
	// the leave announcement in memberlist's queue before it is sent.
	changed := !g.meta.Bootstrapped && !g.meta.Leaving
	g.meta.Bootstrapped = true
	g.mu.Unlock()
	if changed {
		if err := g.list.UpdateNode(5 * time.Second); err != nil {
			g.logger.Warn("publishing metadata", "error", err)
		}
	}
}

// Member is a snapshot of one pool member.
type Member struct {
	Name   string
	Addr   string
	Status string
	Meta   NodeMeta
}

// Members returns every member seen, sorted by name, dead ones included.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.known))
	for _, m := range g.known {
		out = append(out, m)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Forget drops a member from the list shown to operators.
func (g *Gossip) Forget(name string) {
	g.mu.Lock()
	delete(g.known, name)
	g.mu.Unlock()
}

func (g *Gossip) record(n *memberlist.Node, status string) {
	m := Member{Name: n.Name, Addr: n.Address(), Status: status, Meta: DecodeMeta(n.Meta)}
	g.mu.Lock()
	g.known[n.Name] = m
	g.mu.Unlock()
}

// AnnounceLeaving tells the pool this member is about to leave on
// purpose, so that the leader neither adds it back to Raft meanwhile nor
// takes its leave for a failure. It is idempotent.
func (g *Gossip) AnnounceLeaving(timeout time.Duration) {
	g.mu.Lock()
	already := g.meta.Leaving
	g.meta.Leaving = true
	g.mu.Unlock()
	if already {
		return
	}
	if err := g.list.UpdateNode(timeout); err != nil {
		g.logger.Warn("announcing leave", "error", err)
	}
}

// Leave tells the pool this member is leaving on purpose, then stops.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.AnnounceLeaving(timeout)
	if err := g.list.Leave(timeout); err != nil {
		return err
	}
	return g.list.Shutdown()
}

// Shutdown stops gossip without a goodbye (the others will see a failure).
func (g *Gossip) Shutdown() error { return g.list.Shutdown() }

// Port is the gossip port this member listens on.
func (g *Gossip) Port() int { return int(g.list.LocalNode().Port) }

// LocalName is this member's name.
func (g *Gossip) LocalName() string { return g.list.LocalNode().Name }

// NodeMeta implements memberlist.Delegate.
func (g *Gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, _ := json.Marshal(g.meta)
	if len(b) > limit {
		// Labels are what can grow; the rest is small and fixed.
		m := g.meta
		m.Labels = nil
		b, _ = json.Marshal(m)
	}
	return b
}

// NotifyMsg implements memberlist.Delegate; we send no user messages.
func (g *Gossip) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (g *Gossip) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (g *Gossip) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (g *Gossip) MergeRemoteState([]byte, bool) {}

// NotifyJoin implements memberlist.EventDelegate.
func (g *Gossip) NotifyJoin(n *memberlist.Node) {
	g.logger.Debug("member joined", "name", n.Name, "addr", n.Address())
	g.record(n, "alive")
	g.notify()
}

// NotifyLeave implements memberlist.EventDelegate.
func (g *Gossip) NotifyLeave(n *memberlist.Node) {
	status := "failed"
	if DecodeMeta(n.Meta).Leaving {
		status = "left"
	}
	g.logger.Info("member gone", "name", n.Name, "status", status)
	g.record(n, status)
	g.notify()
}

// NotifyUpdate implements memberlist.EventDelegate.
func (g *Gossip) NotifyUpdate(n *memberlist.Node) {
	g.record(n, "alive")
	g.notify()
}
