//go:build linux

package testcluster

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr puts a started process in a group of its own, so signals to
// the group reach it and nothing of the test, and asks the kernel to kill it
// if the test process dies first (a panic, or go test's -timeout), so a
// crashed test leaves no agent behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// taggedPids returns the live processes whose environment holds tagEnv=tag.
func taggedPids(tag string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("\x00" + tagEnv + "=" + tag + "\x00")
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		// Unreadable (another user's) or gone by now: not ours either way.
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || len(env) == 0 {
			continue
		}
		if bytes.Contains(append([]byte{0}, env...), want) {
			out = append(out, pid)
		}
	}
	return out
}

// killTree SIGKILLs the process group pid (0: none) and every process
// carrying tag. Everything is first stopped with SIGSTOP, pass after pass
// until no new process appears, so nothing can fork a survivor while the
// kill is under way.
func killTree(pid int, tag string) int {
	victims := map[int]bool{}
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGSTOP)
		victims[pid] = true
	}
	for range 20 {
		added := false
		for _, q := range taggedPids(tag) {
			if !victims[q] {
				victims[q] = true
				added = true
				_ = syscall.Kill(q, syscall.SIGSTOP)
			}
		}
		if !added {
			break
		}
	}
	for q := range victims {
		_ = syscall.Kill(q, syscall.SIGKILL)
	}
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	// SIGKILL is delivered at once but a process takes a moment to die;
	// callers are told "gone" only once it is.
	deadline := time.Now().Add(5 * time.Second)
	for q := range victims {
		for PidAlive(q) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return len(victims)
}

// cmdline returns a process's command line, arguments joined by spaces.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// PidAlive reports whether pid is a live process. A zombie (exited, not yet
// reaped by its parent, which may be an init that never reaps) counts as
// gone: it runs nothing and holds nothing but its process table entry.
func PidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	switch b[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}
