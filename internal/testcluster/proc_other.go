//go:build !linux

package testcluster

import "syscall"

// sysProcAttr puts a started process in a group of its own. Without Linux's
// Pdeathsig a crashed test can leave it running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// taggedPids needs /proc; elsewhere the harness only knows the process group.
func taggedPids(string) []int { return nil }

// killTree SIGKILLs the process group pid. Without /proc, processes that
// left the group (an agent's jobs) are not found.
func killTree(pid int, _ string) int {
	if pid <= 0 {
		return 0
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return 1
}

func cmdline(int) string { return "" }

// PidAlive reports whether pid exists (a zombie counts as alive here).
func PidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}
