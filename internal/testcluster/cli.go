package testcluster

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CLITimeout bounds one RunCLI call. `job run` waits for its job, so this is
// long; it exists so a hung command fails its test instead of the whole run.
var CLITimeout = 2 * time.Minute

// RunCLI runs the binary bin with args and returns what it printed and its
// exit code. env is added to the test's environment without its OUTPOST_*
// variables (see ProcessOptions.Env); pass "OUTPOST_ADDR=..." or -address to
// reach a server. A command that cannot start, or outlives CLITimeout, is
// reported as a test error with exit code -1. RunCLI may be called from any
// goroutine.
func RunCLI(t testing.TB, bin string, env []string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	return RunCLIInput(t, bin, env, "", args...)
}

// RunCLIInput is RunCLI with stdin, for commands that read a password.
func RunCLIInput(t testing.TB, bin string, env []string, stdin string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CLITimeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(env)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = sysProcAttr()
	// On timeout, kill the whole group: a CLI has no children today, but a
	// hung one must not leave anything behind either way.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	stdout, stderr = out.String(), errb.String()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("testcluster: outpost %s: no exit within %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), CLITimeout, stdout, stderr)
		return stdout, stderr, -1
	case errors.As(err, &ee):
		return stdout, stderr, ee.ExitCode()
	case err != nil:
		t.Errorf("testcluster: running %s %s: %v", bin, strings.Join(args, " "), err)
		return stdout, stderr, -1
	}
	return stdout, stderr, 0
}
