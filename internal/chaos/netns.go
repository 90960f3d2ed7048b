package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
)

// The hosts of a run live in network namespaces (ip netns, from Debian's
// iproute2), one per server and per runner. Each has a veth pair whose
// outer end is a port of one bridge in the root namespace; the bridge has
// the first address of the run's /24 and is the "client": the test
// process itself, outside the fault domain, reaches every host through
// it, and no fault ever names its address.
//
// A partition is a black hole: a DROP rule for the peer's address in the
// INPUT chain of each side's own namespace (iptables, loaded with
// iptables-restore so a host's whole rule set changes in one step), so
// each side silently drops what comes from the other. Packets vanish
// without an answer, as on a cut cable: TCP connections hang until their
// own timeouts rather than being refused, and established connections are
// cut too, since the rules match every packet, not only new connections.
// Not OUTPUT: a packet dropped there fails the sender's own sendto or
// connect at once with EPERM, a warning no real partition gives. Heal
// replaces the rule set with an empty one.
//
// Names carry the pid of the test process (opc-<pid>-s1, bridge opcb<pid>,
// veth opc<pid>s1: interface names have at most 15 bytes), so a run can
// sweep what a killed earlier run left behind (its pid is gone) without
// touching a concurrent one's.

// namePrefix starts every namespace and interface a run makes.
const namePrefix = "opc"

// Host is one network namespace with one address.
type Host struct {
	Name string // s1, r2: the harness's name for it
	NS   string // the namespace
	IP   string
	veth string // outer end, in the root namespace
}

// Prefix is the argv prefix that runs a command inside the host's
// namespace. `ip netns exec` execs the command in place, so the pid the
// harness signals is the agent's own.
func (h *Host) Prefix() []string { return []string{"ip", "netns", "exec", h.NS} }

// Network is a run's bridge and namespaces, and the cuts now in force.
type Network struct {
	id      string // pid of the test process
	bridge  string
	prefix  string // first three octets, "10.213.7"
	client  string
	hosts   map[string]*Host
	order   []string
	iptVers string // `iptables --version`, for the report
	fwdRule []string

	mu sync.Mutex
	// blocked counts, per host, the cuts that block each peer address:
	// two overlapping cuts between the same hosts heal independently.
	blocked map[string]map[string]int
	nextCut int
	cuts    map[int]cut
}

type cut struct{ a, b []string }

// NetworkSupport says whether namespaces can be made here, and if not,
// why: the run then goes on without network faults.
func NetworkSupport() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN")
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (Debian packages iproute2 and iptables; .ci/run installs them)", tool)
		}
	}
	return nil
}

// NewNetwork sweeps what dead earlier runs left, then makes a bridge and
// one namespace per name, each with an address and a veth into the bridge.
// Close removes them all.
func NewNetwork(names []string) (*Network, error) {
	if err := NetworkSupport(); err != nil {
		return nil, err
	}
	sweepStale()
	id := strconv.Itoa(os.Getpid())
	n := &Network{
		id:      id,
		bridge:  namePrefix + "b" + id,
		hosts:   map[string]*Host{},
		blocked: map[string]map[string]int{},
		cuts:    map[int]cut{},
	}
	if out, err := exec.Command("iptables", "--version").CombinedOutput(); err == nil {
		n.iptVers = strings.TrimSpace(string(out))
	}
	prefix, err := pickSubnet()
	if err != nil {
		return nil, err
	}
	n.prefix = prefix
	n.client = prefix + ".1"
	ok := false
	defer func() {
		if !ok {
			n.Close()
		}
	}()
	if err := ipCmd("link", "add", n.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"addr", "add", n.client + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, err
		}
	}
	for i, name := range names {
		h := &Host{
			Name: name,
			NS:   namePrefix + "-" + id + "-" + name,
			IP:   prefix + "." + strconv.Itoa(10+i),
			veth: namePrefix + id + name,
		}
		if len(h.veth) > 15 {
			return nil, fmt.Errorf("interface name %q is longer than 15 bytes; use shorter host names", h.veth)
		}
		n.hosts[name] = h
		n.order = append(n.order, name)
		steps := [][]string{
			{"netns", "add", h.NS},
			{"link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			{"link", "set", h.veth, "master", n.bridge, "up"},
			{"-n", h.NS, "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
		}
		for _, s := range steps {
			if err := ipCmd(s...); err != nil {
				return nil, err
			}
		}
		// Start from an empty, known rule set.
		if err := n.render(h); err != nil {
			return nil, err
		}
	}
	// With br_netfilter loaded, frames crossing the bridge pass the root
	// namespace's FORWARD chain, whose policy is DROP on hosts with
	// Docker. Let the run's own bridge through, and take the rule out again
	// in Close. Best effort: on a host without that problem it changes
	// nothing.
	rule := []string{"FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT", "-m", "comment", "--comment", "outpost-chaos-" + id}
	if err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).Run(); err == nil {
		n.fwdRule = rule
	}
	ok = true
	return n, nil
}

// Describe says what the network is made of, for the report.
func (n *Network) Describe() string {
	return fmt.Sprintf("ip netns + veth pairs into bridge %s (%s.0/24, client %s), partitions as iptables INPUT DROP rules inside the namespaces (%s)",
		n.bridge, n.prefix, n.client, n.iptVers)
}

// Host returns a host by name.
func (n *Network) Host(name string) *Host { return n.hosts[name] }

// Client is the address of the test process on the bridge.
func (n *Network) Client() string { return n.client }

// Cut black-holes traffic between every host of a and every host of b, and
// returns a handle for Heal.
func (n *Network) Cut(a, b []string) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextCut++
	id := n.nextCut
	n.cuts[id] = cut{a: a, b: b}
	return id, n.apply(a, b, +1)
}

// Heal undoes one Cut.
func (n *Network) Heal(id int) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.cuts[id]
	if !ok {
		return nil
	}
	delete(n.cuts, id)
	return n.apply(c.a, c.b, -1)
}

// HealAll undoes every cut in force.
func (n *Network) HealAll() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for id, c := range n.cuts {
		delete(n.cuts, id)
		errs = append(errs, n.apply(c.a, c.b, -1))
	}
	return errors.Join(errs...)
}

// apply changes the block counts for every pair across a and b, on both
// hosts of the pair (each drops what the other sends), then rewrites the
// rule sets of the hosts that changed. Called with mu held.
func (n *Network) apply(a, b []string, delta int) error {
	touched := map[string]bool{}
	add := func(from, to string) {
		hf, ht := n.hosts[from], n.hosts[to]
		if hf == nil || ht == nil || from == to {
			return
		}
		m := n.blocked[from]
		if m == nil {
			m = map[string]int{}
			n.blocked[from] = m
		}
		if m[ht.IP] += delta; m[ht.IP] <= 0 {
			delete(m, ht.IP)
		}
		touched[from] = true
	}
	for _, x := range a {
		for _, y := range b {
			add(x, y)
			add(y, x)
		}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(touched)) {
		errs = append(errs, n.render(n.hosts[name]))
	}
	return errors.Join(errs...)
}

// render loads the host's whole filter table from its block counts.
func (n *Network) render(h *Host) error {
	var b bytes.Buffer
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, ip := range slices.Sorted(maps.Keys(n.blocked[h.Name])) {
		fmt.Fprintf(&b, "-A INPUT -s %s/32 -j DROP\n", ip)
	}
	b.WriteString("COMMIT\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "iptables-restore", "-w")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore in %s: %v: %s", h.NS, err, bytes.TrimSpace(out))
	}
	return nil
}

// Blocked lists, per host, the addresses it cannot reach now.
func (n *Network) Blocked() map[string][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[string][]string{}
	for h, m := range n.blocked {
		if len(m) > 0 {
			out[h] = slices.Sorted(maps.Keys(m))
		}
	}
	return out
}

// Close removes the namespaces (which takes their veth pairs with them),
// the bridge and the FORWARD rule.
func (n *Network) Close() {
	for _, name := range n.order {
		_ = ipCmd("netns", "del", n.hosts[name].NS)
	}
	_ = ipCmd("link", "del", n.bridge)
	if n.fwdRule != nil {
		_ = exec.Command("iptables", append([]string{"-w", "-D"}, n.fwdRule...)...).Run()
	}
}

func ipCmd(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

var (
	staleNSRE   = regexp.MustCompile(`^` + namePrefix + `-([0-9]+)-`)
	staleLinkRE = regexp.MustCompile(`^` + namePrefix + `b?([0-9]+)`)
	staleRuleRE = regexp.MustCompile(`--comment "?outpost-chaos-([0-9]+)"?`)
)

// sweepStale removes namespaces, links and FORWARD rules of runs whose
// test process is gone (SIGKILLed, or a go test -timeout): nothing else
// would ever remove them.
func sweepStale() {
	dead := func(pid string) bool {
		p, err := strconv.Atoi(pid)
		return err == nil && p != os.Getpid() && !testcluster.PidAlive(p)
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if m := staleNSRE.FindStringSubmatch(f[0]); m != nil && dead(m[1]) {
				_ = ipCmd("netns", "del", f[0])
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if m := staleLinkRE.FindStringSubmatch(name); m != nil && dead(m[1]) {
				_ = ipCmd("link", "del", name)
			}
		}
	}
	if out, err := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			m := staleRuleRE.FindStringSubmatch(line)
			if m == nil || !dead(m[1]) || !strings.HasPrefix(line, "-A ") {
				continue
			}
			args := append([]string{"-w", "-D"}, strings.Fields(strings.ReplaceAll(strings.TrimPrefix(line, "-A "), `"`, ""))...)
			_ = exec.Command("iptables", args...).Run()
		}
	}
}

var ipv4RE = regexp.MustCompile(`\b(\d+\.\d+\.\d+\.\d+)(/\d+)?\b`)

// pickSubnet picks a /24 in 10.200.0.0-10.249.255.255 that overlaps no
// address or route this machine has (another run's bridge included), and
// returns its first three octets.
func pickSubnet() (string, error) {
	var used []*net.IPNet
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			return "", fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		for _, m := range ipv4RE.FindAllStringSubmatch(string(out), -1) {
			cidr := m[1] + m[2]
			if m[2] == "" {
				cidr += "/32"
			}
			if _, nw, err := net.ParseCIDR(cidr); err == nil {
				used = append(used, nw)
			}
		}
	}
	for range 200 {
		p := fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(256))
		_, cand, _ := net.ParseCIDR(p + ".0/24")
		clash := false
		for _, u := range used {
			ones, _ := u.Mask.Size()
			// The default route and other wide ones (a VPN's 10.0.0.0/8)
			// overlap everything; a /24 of ours only shadows its own
			// 256 addresses of them.
			if ones > 8 && (u.Contains(cand.IP) || cand.Contains(u.IP)) {
				clash = true
				break
			}
		}
		if !clash {
			return p, nil
		}
	}
	return "", errors.New("no free /24 found in 10.200.0.0/16-10.249.0.0/16")
}
