package testcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

func TestMain(m *testing.M) { Main(m) }

func TestWaitForRetriesUntilTrue(t *testing.T) {
	calls := 0
	WaitFor(t, 10*time.Second, func() (bool, string) {
		calls++
		return calls == 3, "not yet"
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestPollReportsLastMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n := 0
	err := poll(ctx, func() (bool, string, error) {
		n++
		return false, "attempt " + strconv.Itoa(n), nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "attempt ") {
		t.Fatalf("poll error = %v, want the last message", err)
	}
}

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}

func TestServerArgs(t *testing.T) {
	got := strings.Join(serverArgs(ServerOptions{
		Name: "s1", Runner: true, Labels: map[string]string{"b": "2", "a": "1"}, Capacity: 3,
		DataDir: "/d", HTTPPort: 1, RaftPort: 2, GossipPort: 3, BootstrapExpect: 3, LogLevel: "info",
		RetryJoin: []string{"127.0.0.1:4", "127.0.0.1:5"}, RaftMultiplier: 1,
	}), " ")
	want := "agent -server -bootstrap-expect=3 -data-dir=/d -bind=127.0.0.1 -runner -gossip-port=3 -raft-multiplier=1 " +
		"-retry-join=127.0.0.1:4 -retry-join=127.0.0.1:5 -encrypt=" + GossipKey + " -name=s1 -http-port=1 -raft-port=2 -log-level=info " +
		"-label=a=1 -label=b=2 -runner-capacity=3"
	if got != want {
		t.Fatalf("serverArgs:\n got %s\nwant %s", got, want)
	}
}

// A server on an address of its own binds and advertises it, and is
// reached there; runners bind their gossip to theirs.
func TestHostArgs(t *testing.T) {
	o := ServerOptions{Name: "s1", DataDir: "/d", HTTPPort: 1, RaftPort: 2, GossipPort: 3, BootstrapExpect: 3, LogLevel: "info", Host: "10.9.8.7"}
	got := strings.Join(serverArgs(o), " ")
	if !strings.Contains(got, " -bind=10.9.8.7 -advertise=10.9.8.7 ") {
		t.Errorf("serverArgs with Host: %s", got)
	}
	s := &Server{opts: o}
	if s.Addr() != "https://10.9.8.7:1" || s.GossipAddr() != "10.9.8.7:3" {
		t.Errorf("Addr %s, GossipAddr %s", s.Addr(), s.GossipAddr())
	}
	r := strings.Join(runnerArgs(RunnerOptions{Name: "r", Servers: []string{"http://10.9.8.7:1"}, DataDir: "/r", LogLevel: "info", Bind: "10.9.8.8"}, -1), " ")
	if !strings.Contains(r, " -bind=10.9.8.8 ") {
		t.Errorf("runnerArgs with Bind: %s", r)
	}
}

// A prefix that execs in place (env(1) here, `ip netns exec` in the chaos
// test) leaves the pid, and so Freeze, Thaw and Kill, to the process.
func TestProcessPrefix(t *testing.T) {
	skipProcesses(t)
	p := StartProcess(t, ProcessOptions{Name: "prefixed", Path: "/bin/sh", Prefix: []string{"/usr/bin/env", "PREFIXED=yes"},
		Args: []string{"-c", `echo "pid $$ $PREFIXED"; while :; do sleep 0.05; done`}})
	waitLine(t, p, `pid \d+ yes`)
	if !strings.Contains(p.Logs(), "pid "+strconv.Itoa(p.Pid())+" yes") {
		t.Fatalf("the prefixed shell runs under another pid than %d:\n%s", p.Pid(), p.Tail(5))
	}
	if err := p.TryFreeze(); err != nil {
		t.Fatal(err)
	}
	if err := p.TryThaw(); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if err := p.TryFreeze(); err == nil {
		t.Errorf("TryFreeze of a dead process: no error")
	}
	if err := p.TryRestart(); err != nil {
		t.Fatal(err)
	}
	waitLine(t, p, `pid \d+ yes`)
}

func skipProcesses(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the process harness is only exercised on Linux")
	}
}

// shell starts /bin/sh -c script as a Process.
func shell(t *testing.T, script string) *Process {
	t.Helper()
	return StartProcess(t, ProcessOptions{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}})
}

// waitLine waits for a whole log line matching re. Whole lines only: the
// harness's header line quotes the command, and with it the script's text.
func waitLine(t *testing.T, p *Process, re string) {
	t.Helper()
	line := regexp.MustCompile("(?m)^" + re + "$")
	WaitFor(t, 10*time.Second, func() (bool, string) {
		return line.MatchString(p.Logs()), "no log line matches " + strconv.Quote(re) + ":\n" + p.Tail(10)
	})
}

// groupStates returns the /proc states of p and everything it started, one
// letter each (R running, S sleeping, D waiting uninterruptibly, T stopped).
func groupStates(p *Process) string {
	pids := []int{p.Pid()}
	for _, c := range p.Spawned() {
		pids = append(pids, c.Pid)
	}
	var b strings.Builder
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] != 'Z' {
			b.WriteByte(s[i+2])
		}
	}
	return b.String()
}

func TestProcessLifecycle(t *testing.T) {
	skipProcesses(t)
	p := shell(t, `echo "pid $$ up"; trap 'echo "got TERM"; exit 0' TERM; while :; do sleep 0.05; done`)
	waitLine(t, p, `pid \d+ up`)

	// A frozen shell may be caught in vfork: then it waits in D for its
	// child, which is stopped (T). Frozen means: something stopped, and
	// nothing running or sleeping on its own account.
	p.Freeze()
	WaitFor(t, 10*time.Second, func() (bool, string) {
		st := groupStates(p)
		return strings.Contains(st, "T") && strings.Trim(st, "TD") == "", "states " + st + ", want T (and D)"
	})
	p.Thaw()
	WaitFor(t, 10*time.Second, func() (bool, string) {
		st := groupStates(p)
		return !strings.Contains(st, "T"), "states " + st + ", still stopped"
	})

	// Stop works on a frozen process too: it is woken to hear the SIGTERM.
	p.Freeze()
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !p.Exited() || p.ExitCode() != 0 {
		t.Fatalf("after Stop: exited %v, %s", p.Exited(), p.ExitState())
	}
	waitLine(t, p, "got TERM")

	first := p.Pid()
	p.Restart()
	if p.Exited() || p.Pid() == first {
		t.Fatalf("after Restart: exited %v, pid %d (was %d)", p.Exited(), p.Pid(), first)
	}
	WaitFor(t, 10*time.Second, func() (bool, string) {
		n := len(regexp.MustCompile(`(?m)^pid \d+ up$`).FindAllString(p.Logs(), -1))
		return n == 2, "second run has not started:\n" + p.Tail(10)
	})

	p.Kill()
	if !p.Exited() || p.ExitCode() != -1 {
		t.Fatalf("after Kill: exited %v, %s", p.Exited(), p.ExitState())
	}
	if PidAlive(p.Pid()) {
		t.Fatalf("pid %d still alive after Kill", p.Pid())
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	skipProcesses(t)
	p := StartProcess(t, ProcessOptions{
		Name:        "stubborn",
		Path:        "/bin/sh",
		Args:        []string{"-c", `trap '' TERM; echo ready; while :; do sleep 0.05; done`},
		StopTimeout: 500 * time.Millisecond,
	})
	waitLine(t, p, "ready")
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("Stop of a process ignoring SIGTERM = %v, want an error about SIGKILL", err)
	}
	if !p.Exited() {
		t.Fatal("still running after Stop")
	}
}

// startOrphanMaker starts a shell that puts a sleep in a session (and so a
// process group) of its own, as the agent does with jobs, and returns the
// process and the sleep's pid.
func startOrphanMaker(t *testing.T, exitOnTERM bool) (*Process, int) {
	t.Helper()
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Skip("needs setsid(1)")
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	script := setsid + ` sleep 300 & echo $! > ` + pidfile + `; echo ready; `
	if exitOnTERM {
		script += `trap 'exit 0' TERM; `
	}
	script += `while :; do sleep 0.05; done`
	p := shell(t, script)
	waitLine(t, p, "ready")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 5*time.Second, func() (bool, string) {
		for _, s := range p.Spawned() {
			if s.Pid == pid {
				return true, ""
			}
		}
		return false, "sleep " + strconv.Itoa(pid) + " not among Spawned"
	})
	return p, pid
}

func TestKillReachesOtherProcessGroups(t *testing.T) {
	skipProcesses(t)
	p, pid := startOrphanMaker(t, false)
	p.Kill()
	WaitFor(t, 5*time.Second, func() (bool, string) {
		return !PidAlive(pid), "sleep in its own session survived Kill"
	})
}

func TestStopReportsLeftovers(t *testing.T) {
	skipProcesses(t)
	p, pid := startOrphanMaker(t, true)
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "left 1 processes") {
		t.Fatalf("Stop = %v, want an error about the process left running", err)
	}
	WaitFor(t, 5*time.Second, func() (bool, string) {
		return !PidAlive(pid), "the leftover sleep was not killed"
	})
}

func TestCleanupKillsEverything(t *testing.T) {
	skipProcesses(t)
	var pids []int
	t.Run("inner", func(t *testing.T) {
		p, pid := startOrphanMaker(t, false)
		pids = append(pids, p.Pid(), pid)
	})
	for _, pid := range pids {
		if PidAlive(pid) {
			t.Errorf("pid %d (%s) outlived its test", pid, cmdline(pid))
		}
	}
}

func TestRunCLI(t *testing.T) {
	skipProcesses(t)
	t.Setenv("OUTPOST_ADDR", "http://leaked.invalid:1")
	out, errOut, code := RunCLI(t, "/bin/sh", []string{"EXTRA=x"}, "-c", `echo "$EXTRA${OUTPOST_ADDR:-unset}"; echo oops >&2; exit 7`)
	if out != "xunset\n" || errOut != "oops\n" || code != 7 {
		t.Fatalf("RunCLI = %q, %q, %d; want %q, %q, 7", out, errOut, code, "xunset\n", "oops\n")
	}
}

func TestDevServer(t *testing.T) {
	skipProcesses(t)
	s := StartServer(t, ServerOptions{Dev: true, Name: "dev-1"})
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsLeader || st.Name != "dev-1" || !st.Dev {
		t.Fatalf("status = %v, want dev-1 leading in dev mode", st)
	}
	out, _, code := s.CLI("job", "list")
	if code != 0 {
		t.Fatalf("job list exited %d: %s", code, out)
	}

	c := &Cluster{t: t, Servers: []*Server{s}}
	if l := c.WaitForLeader(10 * time.Second); l != s {
		t.Fatalf("Leader = %v, want %s", l.Name(), s.Name())
	}

	s.Kill()
	if _, err := c.Leader(context.Background()); err == nil {
		t.Fatal("Leader found a leader among dead servers")
	}
	s.Restart()
	if _, err := s.Client().Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{})); err != nil {
		t.Fatalf("ListJobs after restart: %v", err)
	}
}

func TestServerOnDisk(t *testing.T) {
	skipProcesses(t)
	c := StartCluster(t, 1, ServerOptions{Runner: true, Labels: map[string]string{"zone": "test"}, Capacity: 2})
	s := c.Servers[0]
	if s.DataDir() == "" {
		t.Fatal("no data dir")
	}
	if _, err := os.Stat(filepath.Join(s.DataDir(), "raft")); err != nil {
		t.Fatalf("raft state not in the data dir: %v", err)
	}
	// Kill, not Stop: the harness is under test here, not the agent's
	// shutdown (the e2e tests own that).
	s.Kill()
	s.Restart()
	if l := c.WaitForLeader(10 * time.Second); l != s {
		t.Fatalf("leader after restart = %s", l.Name())
	}
}

// The harness's cluster shape: three servers that find each other by
// gossip, elect one leader, and elect another when it dies.
func TestThreeServerCluster(t *testing.T) {
	skipProcesses(t)
	c := StartCluster(t, 3, ServerOptions{Name: "c", RaftMultiplier: 1})
	if len(c.Servers) != 3 || len(c.Addrs()) != 3 {
		t.Fatalf("cluster of %d servers", len(c.Servers))
	}
	first := c.WaitForLeader(DefaultReadyTimeout)
	first.Kill()
	next := c.WaitForLeader(DefaultReadyTimeout)
	if next == first {
		t.Fatalf("%s still leads after it was killed", first.Name())
	}
	first.Restart()
	if l := c.WaitForLeader(DefaultReadyTimeout); l == nil {
		t.Fatal("no leader after the old one came back")
	}
}
