package chaos

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testwait"
)

// netHelperEnv makes the test binary, started inside a namespace, a tiny
// network tool instead of a test run: "listen ADDR" accepts connections
// until killed; "dial ADDR" exits 0 if a connection opens within a second.
const netHelperEnv = "OUTPOST_CHAOS_NETHELPER"

func netHelper(spec string) int {
	verb, addr, _ := strings.Cut(spec, " ")
	switch verb {
	case "listen":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return 1
		}
		c.Close()
		return 0
	}
	return 2
}

// A cut black-holes two hosts from each other and nothing else: the client
// (the test process, on the bridge) still reaches both, and healing
// restores the link.
func TestNetworkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("makes network namespaces")
	}
	if err := NetworkSupport(); err != nil {
		t.Skipf("no network namespaces here: %v", err)
	}
	nw, err := NewNetwork([]string{"ta", "tb"})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := func(host, spec string) *exec.Cmd {
		argv := append(nw.Host(host).Prefix(), exe)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), netHelperEnv+"="+spec)
		return cmd
	}
	addr := net.JoinHostPort(nw.Host("tb").IP, "7999")
	ln := helper("tb", "listen "+addr)
	if err := ln.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Process.Kill(); _ = ln.Wait() }()

	fromClient := func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	fromA := func() error { return helper("ta", "dial "+addr).Run() }
	testwait.For(t, 10*time.Second, func() (bool, error) {
		err := fromClient()
		if err != nil {
			err = fmt.Errorf("the listener in tb is not reachable from the client: %w", err)
		}
		return err == nil, err
	})
	if err := fromA(); err != nil {
		t.Fatalf("ta cannot reach tb before any cut: %v", err)
	}
	id, err := nw.Cut([]string{"ta"}, []string{"tb"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fromA(); err == nil {
		t.Errorf("ta reaches tb through the cut")
	}
	if err := fromClient(); err != nil {
		t.Errorf("the client lost tb during a cut between ta and tb: %v", err)
	}
	if b := nw.Blocked(); len(b["ta"]) != 1 || len(b["tb"]) != 1 {
		t.Errorf("blocked addresses during the cut: %v", b)
	}
	if err := nw.Heal(id); err != nil {
		t.Fatal(err)
	}
	if err := fromA(); err != nil {
		t.Errorf("ta cannot reach tb after the heal: %v", err)
	}
	if b := nw.Blocked(); len(b) != 0 {
		t.Errorf("blocked addresses after the heal: %v", b)
	}
}
