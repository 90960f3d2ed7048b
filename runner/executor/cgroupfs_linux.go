package executor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// This file reads the host's cgroup layout and holds the small file
// helpers both cgroup versions use. It is our own code rather than
// containerd/cgroups: that module pulls in cilium/ebpf, godbus and
// go-systemd, which every runner would link and map, for a few dozen
// file reads and writes.

// v1Controllers are the cgroup v1 controllers the executor uses, in the
// order they are set up.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "freezer"}

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct {
	point string // where it is mounted
	root  string // the hierarchy's directory at that mount point
	v2    bool
	// controllers are the v1 controllers bound to the hierarchy.
	controllers []string
}

// readCgroupMounts lists the cgroup hierarchies in /proc/self/mountinfo.
func readCgroupMounts() ([]cgroupMount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountInfo(b), nil
}

func parseMountInfo(b []byte) []cgroupMount {
	var out []cgroupMount
	for line := range strings.SplitSeq(string(b), "\n") {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		m := cgroupMount{root: unescapeMount(f[3]), point: unescapeMount(f[4])}
		switch g[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for opt := range strings.SplitSeq(g[2], ",") {
				for _, c := range v1Controllers {
					if opt == c {
						m.controllers = append(m.controllers, c)
					}
				}
			}
			if len(m.controllers) == 0 {
				continue // a named hierarchy such as name=systemd
			}
		default:
			continue
		}
		out = append(out, m)
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// procCgroups maps each v1 controller, and "" for the unified hierarchy,
// to this process's cgroup path in it, from /proc/self/cgroup.
func procCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	return parseProcCgroup(b), nil
}

func parseProcCgroup(b []byte) map[string]string {
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		// 4:memory:/process_api/df26…, 2:cpu,cpuacct:/, 0::/
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// cgroupDir is where the cgroup at path (as /proc/self/cgroup names it)
// is in the file system under mount m, or "" when the mount does not
// show it (a container that sees only part of the hierarchy).
func cgroupDir(m cgroupMount, path string) string {
	if m.root == "/" {
		return filepath.Join(m.point, path)
	}
	if path == m.root {
		return m.point
	}
	if rest, ok := strings.CutPrefix(path, m.root+"/"); ok {
		return filepath.Join(m.point, rest)
	}
	return ""
}

// writeCgroupFile writes s to a cgroup interface file with plain
// syscalls: no buffering, one write, and on the calling thread, which
// matters when the file is `tasks` and the value "0" (this thread).
func writeCgroupFile(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(s)); err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// readKeyed returns the value of key in a "key value" per line file such
// as cpu.stat or memory.events.
func readKeyed(path, key string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// readUint reads a file holding one number.
func readUint(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// cgroupPids lists the processes in dir and every cgroup below it (a job
// running as root may make its own).
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		pids = append(pids, procsIn(path)...)
		return nil
	})
	return pids
}

// procsIn lists the processes in the cgroup dir itself.
func procsIn(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// removeCgroup removes dir and the cgroups below it, deepest first. A
// cgroup whose last process has just died can refuse (EBUSY) for a moment
// while the kernel finishes with it, so each removal is retried briefly.
func removeCgroup(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := rmdirRetry(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func rmdirRetry(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(wait)
	}
}

// pollUntil calls done with growing pauses until it returns true or
// timeout passes, and reports which.
func pollUntil(timeout time.Duration, done func() bool) bool {
	deadline := time.Now().Add(timeout)
	for wait := 200 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		if done() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}
