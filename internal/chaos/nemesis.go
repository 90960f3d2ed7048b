package chaos

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
)

// Fault kinds. Server kinds aimed at "the leader" find it when they start
// (Status on every server); which server leads is not part of the seed.
const (
	KillLeader     = "kill-leader"     // SIGKILL the leader, restart it later
	KillFollower   = "kill-follower"   // SIGKILL a follower, restart it later
	FreezeLeader   = "freeze-leader"   // SIGSTOP the leader, SIGCONT later
	FreezeFollower = "freeze-follower" // SIGSTOP a follower
	KillRunner     = "kill-runner"     // SIGKILL a runner alone (its watchdog must end its steps), restart it
	FreezeRunner   = "freeze-runner"   // SIGSTOP a runner; its steps, in groups of their own, run on
	CutRunner      = "cut-runner"      // one runner from every server
	CutRunnerOwn   = "cut-runner-own"  // one runner from the server its stream is open to
	CutServer      = "cut-server"      // one server from the other servers; runners and clients still reach it
	Split          = "split"           // one server and some runners | the other two servers and the rest
)

// kindWeights is how often each kind is drawn. Runner faults are the
// commonest: they are what leases and fencing exist for.
var kindWeights = []struct {
	kind    string
	weight  int
	network bool
}{
	{KillLeader, 2, false},
	{KillFollower, 2, false},
	{FreezeLeader, 2, false},
	{FreezeFollower, 1, false},
	{KillRunner, 3, false},
	{FreezeRunner, 4, false},
	{CutRunner, 3, true},
	{CutRunnerOwn, 2, true},
	{CutServer, 3, true},
	{Split, 2, true},
}

// serverKind reports whether a kind takes a server away from the others,
// so that no two such faults overlap and a quorum usually remains.
func serverKind(k string) bool {
	switch k {
	case KillLeader, KillFollower, FreezeLeader, FreezeFollower, CutServer, Split:
		return true
	}
	return false
}

// runnerKind reports whether a kind is aimed at one runner.
func runnerKind(k string) bool {
	switch k {
	case KillRunner, FreezeRunner, CutRunner, CutRunnerOwn:
		return true
	}
	return false
}

// Planned is one fault of the schedule: what, when (offset from the start
// of the run) and for how long, and the random numbers its target is
// picked with when it starts.
type Planned struct {
	Kind   string        `json:"kind"`
	At     time.Duration `json:"at"`
	For    time.Duration `json:"for"`
	Runner int           `json:"runner"` // runner kinds: which runner
	Pick   int           `json:"pick"`   // a follower, a role, a server
	Sides  uint          `json:"sides"`  // split: bit i set = runner i with the lone server
}

// Plan makes the fault schedule for a run of length total: a pure function
// of the seed and the shape of the cluster, so CHAOS_SEED replays the same
// choices (the timing of the processes around them differs from run to
// run). A fault starts every 1-6 s when the rules allow: at most two at
// once, at most one that takes a server away (kill, freeze, cut, split:
// two would cost the quorum), at most one per runner. Kills keep the
// process down 0.5-10 s; freezes and cuts last 1-20 s, so many outlast
// the servers' runner_timeout.
func Plan(seed uint64, total time.Duration, runners int, network bool) []Planned {
	rng := rand.New(rand.NewPCG(seed, seed^0xda942042e4dd58b5))
	var kinds []string
	for _, k := range kindWeights {
		if k.network && !network {
			continue
		}
		for range k.weight {
			kinds = append(kinds, k.kind)
		}
	}
	var plan []Planned
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	feasible := func(p Planned) bool {
		active, servers := 0, 0
		for _, q := range plan {
			if q.At+q.For <= p.At {
				continue
			}
			active++
			if serverKind(q.Kind) {
				servers++
			}
			if runnerKind(q.Kind) && runnerKind(p.Kind) && q.Runner == p.Runner {
				return false
			}
		}
		return active < 2 && !(serverKind(p.Kind) && servers > 0)
	}
	// A few seconds of calm first, so the run starts with work flowing.
	for at := 3 * time.Second; at < total; at += between(time.Second, 6*time.Second) {
		for range 5 {
			p := Planned{Kind: kinds[rng.IntN(len(kinds))], At: at, Runner: rng.IntN(runners), Pick: rng.IntN(1 << 16), Sides: uint(rng.IntN(1 << runners))}
			switch p.Kind {
			case KillLeader, KillFollower, KillRunner:
				p.For = between(500*time.Millisecond, 10*time.Second)
			default:
				p.For = between(time.Second, 20*time.Second)
			}
			if at+p.For > total {
				p.For = total - at
			}
			if feasible(p) {
				plan = append(plan, p)
				break
			}
		}
	}
	return plan
}

// Fault is one fault as it happened.
type Fault struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
	Detail string `json:"detail,omitempty"`
	// Runners are the runners whose process or network it touched; Servers
	// the servers it took down, froze or cut; Isolated the servers it cut
	// off from the majority (they must not acknowledge writes).
	Runners  []string `json:"runners,omitempty"`
	Servers  []string `json:"servers,omitempty"`
	Isolated []string `json:"isolated,omitempty"`
	// CLOCK_MONOTONIC ns: applying began, was done; healing began, was done.
	Begin   int64     `json:"begin"`
	Applied int64     `json:"applied"`
	Healing int64     `json:"healing"`
	Healed  int64     `json:"healed"`
	At      time.Time `json:"at"`
	Err     string    `json:"err,omitempty"`

	heal func() error
}

// Env is what the nemesis acts on.
type Env struct {
	Cluster *testcluster.Cluster
	Runners []*testcluster.Runner
	// Net is nil when the run has no network faults.
	Net *Network
	// ServerHosts and RunnerHosts name each one's host in Net.
	ServerHosts, RunnerHosts []string
}

// Nemesis executes a Plan.
type Nemesis struct {
	env   Env
	plan  []Planned
	start time.Time

	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	faults []*Fault
	notes  []string
}

// StartNemesis runs plan against env from now on.
func StartNemesis(env Env, plan []Planned) *Nemesis {
	n := &Nemesis{env: env, plan: plan, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n
}

type event struct {
	at  time.Duration
	end bool
	i   int
}

func (n *Nemesis) run() {
	defer close(n.done)
	var events []event
	for i, p := range n.plan {
		events = append(events, event{p.At, false, i}, event{p.At + p.For, true, i})
	}
	// In time order; at one instant ends first, so a slot is free again.
	sort.SliceStable(events, func(a, b int) bool {
		if events[a].at != events[b].at {
			return events[a].at < events[b].at
		}
		return events[a].end && !events[b].end
	})
	active := map[int]*Fault{}
	defer func() {
		// Stopped, or the plan is done: heal what is still in force, the
		// newest first.
		var idx []int
		for i := range active {
			idx = append(idx, i)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(idx)))
		for _, i := range idx {
			n.healFault(active[i])
		}
	}()
	for _, ev := range events {
		wait := time.Until(n.start.Add(ev.at))
		select {
		case <-n.stop:
			return
		case <-time.After(wait):
		}
		if ev.end {
			if f := active[ev.i]; f != nil {
				n.healFault(f)
				delete(active, ev.i)
			}
			continue
		}
		f := n.apply(n.plan[ev.i])
		n.mu.Lock()
		n.faults = append(n.faults, f)
		n.mu.Unlock()
		if f.Err == "" {
			active[ev.i] = f
		}
	}
}

// Stop ends the schedule early and heals every fault in force: frozen
// processes are thawed, killed ones restarted, cuts removed.
func (n *Nemesis) Stop() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	<-n.done
}

// Faults returns a copy of every fault so far, in the order they
// started; one still in force has Healed 0.
func (n *Nemesis) Faults() []Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]Fault, len(n.faults))
	for i, f := range n.faults {
		out[i] = *f
		out[i].heal = nil
	}
	return out
}

// Notes returns what went wrong applying or healing faults: harness
// problems, not findings about outpost.
func (n *Nemesis) Notes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.notes...)
}

func (n *Nemesis) note(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notes = append(n.notes, fmt.Sprintf("%s: ", time.Since(n.start).Round(time.Millisecond))+fmt.Sprintf(format, args...))
}

func (n *Nemesis) healFault(f *Fault) {
	n.mu.Lock()
	f.Healing = Mono()
	n.mu.Unlock()
	if f.heal != nil {
		if err := f.heal(); err != nil {
			n.note("healing %s of %s: %v", f.Kind, f.Target, err)
		}
	}
	n.mu.Lock()
	f.Healed = Mono()
	n.mu.Unlock()
}

// leader finds the leader now, or nil.
func (n *Nemesis) leader() *testcluster.Server {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := n.env.Cluster.Leader(ctx)
	if err != nil {
		return nil
	}
	return s
}

// server picks the target of a server fault: the leader, or a running
// follower picked by pick.
func (n *Nemesis) server(wantLeader bool, pick int) (*testcluster.Server, string) {
	l := n.leader()
	if wantLeader {
		if l != nil {
			return l, "leader"
		}
		// No single leader right now (an election): any running server.
		var up []*testcluster.Server
		for _, s := range n.env.Cluster.Servers {
			if !s.Exited() {
				up = append(up, s)
			}
		}
		if len(up) == 0 {
			return nil, ""
		}
		return up[pick%len(up)], "no leader known; picked a server"
	}
	var followers []*testcluster.Server
	for _, s := range n.env.Cluster.Servers {
		if s != l && !s.Exited() {
			followers = append(followers, s)
		}
	}
	if len(followers) == 0 {
		return nil, ""
	}
	return followers[pick%len(followers)], "follower"
}

func (n *Nemesis) serverIndex(s *testcluster.Server) int {
	for i, x := range n.env.Cluster.Servers {
		if x == s {
			return i
		}
	}
	return -1
}

func (n *Nemesis) apply(p Planned) *Fault {
	f := &Fault{Kind: p.Kind, Begin: Mono(), At: time.Now()}
	defer func() { f.Applied = Mono() }()
	fail := func(format string, args ...any) *Fault {
		f.Err = fmt.Sprintf(format, args...)
		n.note("%s: %s", p.Kind, f.Err)
		return f
	}
	switch p.Kind {
	case KillLeader, KillFollower, FreezeLeader, FreezeFollower:
		s, role := n.server(p.Kind == KillLeader || p.Kind == FreezeLeader, p.Pick)
		if s == nil {
			return fail("no running server to fault")
		}
		f.Target, f.Detail, f.Servers = s.Name(), role, []string{s.Name()}
		if p.Kind == KillLeader || p.Kind == KillFollower {
			s.Kill()
			f.heal = s.TryRestart
			return f
		}
		if err := s.TryFreeze(); err != nil {
			return fail("%v", err)
		}
		f.heal = s.TryThaw
		return f

	case KillRunner, FreezeRunner:
		r := n.env.Runners[p.Runner]
		f.Target, f.Runners = r.Name(), []string{r.Name()}
		if r.Exited() {
			return fail("%s is not running", r.Name())
		}
		if p.Kind == KillRunner {
			// The runner's process group alone, as a crash or the OOM
			// killer would: its steps and its watchdog are left, and the
			// watchdog must end the steps.
			if err := r.TryCrash(); err != nil {
				return fail("%v", err)
			}
			f.heal = r.TryRestart
			return f
		}
		if err := r.TryFreeze(); err != nil {
			return fail("%v", err)
		}
		f.heal = r.TryThaw
		return f

	case CutRunner, CutRunnerOwn:
		r := n.env.Runners[p.Runner]
		f.Target, f.Runners = r.Name(), []string{r.Name()}
		var to []string
		if p.Kind == CutRunnerOwn {
			s := n.streamServer(r, p.Pick)
			if s == nil {
				// Between connections: there is no server of its own to
				// cut it from. Cut it from all, and say so.
				f.Kind, f.Detail = CutRunner, "cut-runner-own found no open stream; cut from every server"
			} else {
				to = []string{n.env.ServerHosts[n.serverIndex(s)]}
				f.Detail = "from " + s.Name()
			}
		}
		if to == nil {
			to = n.env.ServerHosts
		}
		return n.cut(f, []string{n.env.RunnerHosts[p.Runner]}, to)

	case CutServer:
		s, role := n.server(p.Pick%2 == 0, p.Pick/2)
		if s == nil {
			return fail("no running server to cut")
		}
		i := n.serverIndex(s)
		var others []string
		for j, h := range n.env.ServerHosts {
			if j != i {
				others = append(others, h)
			}
		}
		f.Target, f.Detail, f.Servers, f.Isolated = s.Name(), role, []string{s.Name()}, []string{s.Name()}
		return n.cut(f, []string{n.env.ServerHosts[i]}, others)

	case Split:
		s, role := n.server(p.Pick%2 == 0, p.Pick/2)
		if s == nil {
			return fail("no running server to split off")
		}
		i := n.serverIndex(s)
		minority := []string{n.env.ServerHosts[i]}
		var majority, with []string
		for j, h := range n.env.ServerHosts {
			if j != i {
				majority = append(majority, h)
			}
		}
		for j, h := range n.env.RunnerHosts {
			if p.Sides&(1<<j) != 0 {
				minority = append(minority, h)
				with = append(with, n.env.Runners[j].Name())
			} else {
				majority = append(majority, h)
			}
			// Every runner is cut from some server: all count as faulted.
			f.Runners = append(f.Runners, n.env.Runners[j].Name())
		}
		f.Target, f.Servers, f.Isolated = s.Name(), []string{s.Name()}, []string{s.Name()}
		f.Detail = fmt.Sprintf("%s (%s) with runners [%s] | the rest", s.Name(), role, strings.Join(with, " "))
		return n.cut(f, minority, majority)
	}
	return fail("unknown fault kind %q", p.Kind)
}

func (n *Nemesis) cut(f *Fault, a, b []string) *Fault {
	id, err := n.env.Net.Cut(a, b)
	if err != nil {
		// Part of it may be in force: heal what there is.
		_ = n.env.Net.Heal(id)
		f.Err = err.Error()
		n.note("%s of %s: %v", f.Kind, f.Target, err)
		return f
	}
	f.heal = func() error { return n.env.Net.Heal(id) }
	return f
}

// streamServer finds the server a runner has its stream open to, from the
// established TCP connections in the runner's own network namespace
// (/proc/PID/net/tcp shows the namespace of PID). pick chooses when it has
// several (an old connection not yet closed).
func (n *Nemesis) streamServer(r *testcluster.Runner, pick int) *testcluster.Server {
	pid := r.Pid()
	if pid == 0 || r.Exited() {
		return nil
	}
	peers := map[string]bool{}
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/net/" + name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "01" { // 01: ESTABLISHED
				continue
			}
			if addr := procAddr(fields[2]); addr != "" {
				peers[addr] = true
			}
		}
		f.Close()
	}
	var found []*testcluster.Server
	for _, s := range n.env.Cluster.Servers {
		if peers[net.JoinHostPort(s.Host(), strconv.Itoa(s.HTTPPort()))] {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return nil
	}
	return found[pick%len(found)]
}

// procAddr decodes an address of /proc/net/tcp ("0100007F:1F90", the
// address in the kernel's byte order, little-endian here) into
// "127.0.0.1:8080"; IPv4-mapped IPv6 addresses of tcp6 too.
func procAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return ""
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return ""
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b)%4 != 0 {
		return ""
	}
	ip := make(net.IP, len(b))
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(ip[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10))
}
