package testcluster

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// handedOut remembers every port FreePort returned in this process. A port
// is free again as soon as its probe is closed, while the process it was
// meant for has not bound it yet; two servers of one test must never be
// given the same port.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a port on 127.0.0.1 that is free for TCP and UDP (gossip
// uses both) and that no earlier call in this process returned.
//
// It prefers ports below the kernel's ephemeral range: a port from there
// (what listening on :0 gives) can be taken as the source port of any
// outgoing connection, and agents open many, between the probe and the
// agent's bind. Other processes can still take a port first; StartServer
// and StartCluster retry with new ports when that happens.
func FreePort(t testing.TB) int {
	t.Helper()
	if lo, hi, ok := quietRange(); ok {
		for range 1000 {
			p := lo + rand.IntN(hi-lo)
			if claim(p) {
				return p
			}
		}
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testcluster: finding a free port: %v", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if claim(p) {
			return p
		}
	}
	t.Fatalf("testcluster: no free port found")
	return 0
}

// claim reserves p for this process if nobody here has it and it binds.
func claim(p int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports[p] || !bindable(p) {
		return false
	}
	handedOut.ports[p] = true
	return true
}

func bindable(p int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

// quietRange returns ports [lo, hi) that the kernel does not hand out as
// ephemeral ports, read from Linux's ip_local_port_range.
func quietRange() (lo, hi int, ok bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, false
	}
	first, err1 := strconv.Atoi(f[0])
	last, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	// Well above the ports of common services and of hand-run agents
	// (7700-7702 by default).
	const floor = 10000
	switch {
	case first-floor >= 2000:
		return floor, first, true
	case 65536-(last+1) >= 2000:
		return last + 1, 65536, true
	}
	return 0, 0, false
}
