package testcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// DefaultStopTimeout is how long Stop waits after SIGTERM before SIGKILL.
const DefaultStopTimeout = 30 * time.Second

// dumpLines is how much of each process log a failed test prints.
const dumpLines = 150

// tagEnv is set, to a value unique to each Process, in the environment of
// everything the harness starts. The agent passes its environment on to the
// jobs it runs, which run in process groups of their own and are re-parented
// when the agent dies; the tag is how the harness finds them to kill them.
const tagEnv = "OUTPOST_TESTCLUSTER_TAG"

var procSeq atomic.Int64

// ProcessOptions describes a process to start.
type ProcessOptions struct {
	// Name identifies the process in logs and failure messages.
	Name string
	// Path is the executable; empty means the outpost binary (Binary).
	Path string
	Args []string
	// Env is added to the test's environment, from which every OUTPOST_*
	// variable is removed first so a developer's shell (OUTPOST_ADDR
	// pointing at a real server) cannot leak into a test.
	Env []string
	// Dir is the working directory; empty means a fresh temporary one.
	Dir string
	// DataDir is the process's state directory, if it has one. The harness
	// only reports it (DataDir); the caller passes it in Args.
	DataDir string
	// StopTimeout is how long Stop waits for an exit after SIGTERM;
	// DefaultStopTimeout when zero.
	StopTimeout time.Duration
	// Prefix, when set, is put before Path and Args on the command line:
	// the process is started as Prefix[0] Prefix[1:]... Path Args..., to
	// run it in another context, such as `ip netns exec NS` for a network
	// namespace. The prefix must exec Path in place, as `ip netns exec`
	// does, so that the pid, the process group and the signals the harness
	// sends (Kill, Freeze, Thaw) are still the process's own.
	Prefix []string
}

// Process is one operating-system process started by a test: an agent, or
// anything else. Its stdout and stderr go to a log file. Its methods are
// safe for concurrent use.
type Process struct {
	t           testing.TB
	name        string
	path        string
	args        []string
	env         []string
	dir         string
	dataDir     string
	prefix      []string
	logPath     string
	tag         string
	stopTimeout time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current run has exited
	state   *os.ProcessState
	starts  int
	cleaned bool
}

// StartProcess starts a process for the duration of the test. It is killed,
// together with everything it started, when the test ends; if the test
// failed, the tail of its log is printed.
func StartProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	p := NewProcess(t, opts)
	if err := p.start(); err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	return p
}

// NewProcess prepares a process without starting it; Restart starts it.
// It exists for callers that must know the log path before the first start.
func NewProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	if opts.Path == "" {
		opts.Path = Binary(t)
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(opts.Path)
	}
	logDir := t.TempDir()
	if opts.Dir == "" {
		opts.Dir = logDir
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	seq := procSeq.Add(1)
	p := &Process{
		t:           t,
		name:        opts.Name,
		path:        opts.Path,
		args:        append([]string(nil), opts.Args...),
		dir:         opts.Dir,
		dataDir:     opts.DataDir,
		prefix:      append([]string(nil), opts.Prefix...),
		logPath:     filepath.Join(logDir, safeName(opts.Name)+".log"),
		tag:         fmt.Sprintf("%d-%d", os.Getpid(), seq),
		stopTimeout: opts.StopTimeout,
	}
	p.env = append(childEnv(opts.Env), tagEnv+"="+p.tag)
	// Registered after t.TempDir above, so it runs before the directory is
	// removed: the processes writing into it must be gone by then.
	t.Cleanup(p.cleanup)
	return p
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// childEnv is the test's environment without OUTPOST_* variables, plus extra.
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTPOST_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cleaned {
		return fmt.Errorf("%s: test is over", p.name)
	}
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: still running (pid %d)", p.name, p.cmd.Process.Pid)
		}
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", p.name, err)
	}
	// A header per start: after a restart the log shows which run said what.
	argv := append(append(append([]string(nil), p.prefix...), p.path), p.args...)
	fmt.Fprintf(f, "==== testcluster: start #%d of %s at %s: %s\n",
		p.starts+1, p.name, time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	// The child has its own descriptor; ours would only keep the file open.
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state = cmd, done, nil
	p.starts++
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Name returns the name the process was started with.
func (p *Process) Name() string { return p.name }

// Args returns the arguments the process is started with.
func (p *Process) Args() []string { return append([]string(nil), p.args...) }

// DataDir returns the data directory given in ProcessOptions.
func (p *Process) DataDir() string { return p.dataDir }

// LogPath returns the file the process's stdout and stderr go to.
func (p *Process) LogPath() string { return p.logPath }

// Pid returns the pid of the current (or last) run, 0 before the first.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited reports whether the current run has ended (true before the first).
func (p *Process) Exited() bool {
	select {
	case <-p.doneCh():
		return true
	default:
		return false
	}
}

// Done returns a channel closed when the current run ends.
func (p *Process) Done() <-chan struct{} { return p.doneCh() }

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (p *Process) doneCh() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return closedCh
	}
	return p.done
}

// ExitCode returns the exit code of the last run once it has ended: -1 if it
// was ended by a signal, or if it is still running.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// ExitState describes how the last run ended ("exit status 0", "signal:
// killed"), or "running".
func (p *Process) ExitState() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return "running"
	}
	return p.state.String()
}

// Wait waits up to timeout for the current run to end.
func (p *Process) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.doneCh():
		return nil
	case <-t.C:
		return fmt.Errorf("%s (pid %d) still running after %v", p.name, p.Pid(), timeout)
	}
}

// Logs returns everything the process has written so far, all runs.
func (p *Process) Logs() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	return string(b)
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines in %s)", len(lines)-n, p.logPath)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// signal sends sig to the process group of the current run, which holds the
// process itself (jobs an agent runs have groups of their own).
func (p *Process) signal(sig syscall.Signal) error {
	pid := p.Pid()
	if pid == 0 || p.Exited() {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("%s: kill -%d %d: %w", p.name, sig, -pid, err)
	}
	return nil
}

// Kill ends the process and everything it started with SIGKILL, as a power
// cut would, and waits for it to exit.
func (p *Process) Kill() {
	p.t.Helper()
	killed := p.killAll()
	if err := p.Wait(30 * time.Second); err != nil {
		p.t.Errorf("testcluster: SIGKILL: %v", err)
	}
	p.logf("killed %s with SIGKILL (%d processes)", p.name, killed)
}

// Stop asks the process to shut down with SIGTERM and waits for it, for the
// StopTimeout at most; then it is killed. The error says what went wrong:
// it had to be killed, it exited with a failure, or it left processes it
// started running. Whatever the error, nothing is left running.
func (p *Process) Stop() error {
	if p.Exited() {
		p.killAll() // anything it left behind
		return fmt.Errorf("%s is not running (%s)", p.name, p.ExitState())
	}
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
	}
	// A frozen process would hold the SIGTERM until thawed; wake it, as
	// service managers do, so it can act on it.
	_ = syscall.Kill(-pid, syscall.SIGCONT)
	start := time.Now()
	if err := p.Wait(p.stopTimeout); err != nil {
		p.killAll()
		_ = p.Wait(30 * time.Second)
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killed it with SIGKILL", p.name, pid, p.stopTimeout)
	}
	took := time.Since(start).Round(time.Millisecond)
	// A clean shutdown stops what it started; give processes that were sent
	// a signal just before the exit a moment to go.
	var left []ProcInfo
	deadline := time.Now().Add(3 * time.Second)
	for {
		left = p.Spawned()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		p.killAll()
		return fmt.Errorf("%s exited %v after SIGTERM but left %d processes running (killed now): %v", p.name, took, len(left), left)
	}
	if code := p.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited %v after SIGTERM with %s", p.name, took, p.ExitState())
	}
	p.logf("stopped %s with SIGTERM in %v", p.name, took)
	return nil
}

// TryFreeze is Freeze for callers off the test's goroutine (a fault
// injector): it returns the error (the process is not running) instead of
// failing the test.
func (p *Process) TryFreeze() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	p.logf("froze %s (SIGSTOP)", p.name)
	return nil
}

// TryThaw is Thaw that returns its error instead of failing the test.
func (p *Process) TryThaw() error {
	if err := p.signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	p.logf("thawed %s (SIGCONT)", p.name)
	return nil
}

// TryRestart starts the process again, as Restart does, and returns the
// error instead of failing the test; it does not wait for the process to
// be ready (Server and Runner have their own waits).
func (p *Process) TryRestart() error { return p.start() }

// Freeze stops the process with SIGSTOP: it holds its sockets but answers
// nothing, like a hung or partitioned node. The jobs it runs, in their own
// process groups, keep running.
func (p *Process) Freeze() {
	p.t.Helper()
	if err := p.signal(syscall.SIGSTOP); err != nil {
		p.t.Fatalf("testcluster: freeze: %v", err)
	}
	p.logf("froze %s (SIGSTOP)", p.name)
}

// Thaw resumes a frozen process with SIGCONT.
func (p *Process) Thaw() {
	p.t.Helper()
	if err := p.signal(syscall.SIGCONT); err != nil {
		p.t.Fatalf("testcluster: thaw: %v", err)
	}
	p.logf("thawed %s (SIGCONT)", p.name)
}

// Restart starts the process again with the same arguments, environment and
// data directory. It must have exited (Kill or Stop it first); its log
// continues in the same file.
func (p *Process) Restart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testcluster: restart: %v", err)
	}
}

// ProcInfo describes a live process.
type ProcInfo struct {
	Pid     int
	Cmdline string
}

func (i ProcInfo) String() string { return fmt.Sprintf("%d %q", i.Pid, i.Cmdline) }

// Spawned lists the live processes this Process started, directly or not,
// and still running: an agent's jobs, say. It does not list the process
// itself. It works on Linux only (it reads /proc); elsewhere it is empty.
func (p *Process) Spawned() []ProcInfo {
	self := 0
	if !p.Exited() {
		self = p.Pid()
	}
	var out []ProcInfo
	for _, pid := range taggedPids(p.tag) {
		if pid != self {
			out = append(out, ProcInfo{Pid: pid, Cmdline: cmdline(pid)})
		}
	}
	return out
}

// killAll SIGKILLs the process and every process that carries its tag, and
// returns how many it signalled.
func (p *Process) killAll() int {
	pid := 0
	if !p.Exited() {
		pid = p.Pid()
	}
	return killTree(pid, p.tag)
}

// cleanup runs when the test ends: kill everything, then show the log if the
// test failed.
func (p *Process) cleanup() {
	p.mu.Lock()
	p.cleaned = true
	started := p.done != nil
	p.mu.Unlock()
	if !started {
		return
	}
	left := p.Spawned()
	running := !p.Exited()
	p.killAll()
	if err := p.Wait(30 * time.Second); err != nil {
		p.t.Errorf("testcluster: cleanup: %v", err)
	}
	if !running && len(left) > 0 {
		p.t.Logf("testcluster: killed %d processes %s had left behind: %v", len(left), p.name, left)
	}
	if p.t.Failed() {
		state := p.ExitState()
		if running {
			state = "running until cleanup"
		}
		p.t.Logf("testcluster: ---- last %d lines of %s (%s, pid %d, %s) ----\n%s\n---- end of %s ----",
			dumpLines, p.name, p.logPath, p.Pid(), state, p.Tail(dumpLines), p.name)
	}
}

// logf notes a harness action in the process's log, so the log reads as a
// timeline of what the test did to it.
func (p *Process) logf(format string, args ...any) {
	f, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "==== testcluster: %s: %s\n", time.Now().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
}

// Reload sends SIGHUP to the agent itself (not its process group, where
// a runner's jobs live): it rereads its config and certificate files.
func (p *Process) Reload() error {
	pid := p.Pid()
	if pid == 0 || p.Exited() {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("%s: kill -HUP %d: %w", p.name, pid, err)
	}
	return nil
}
