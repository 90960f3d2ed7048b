package executor

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Isolation confines the processes of an on_demand job: a session of their
// own, another user, and resource limits set before the step's program
// starts. Go cannot set rlimits on a child between fork and exec, so limits
// go through a launcher: a small program (outpost's hidden
// `executor-launch` command, which calls LaunchMain) that sets them on
// itself and then execs the step, so the step and all it starts inherit
// them from its first instruction.
type Isolation struct {
	// UID and GID to run as; SetUser false keeps the runner's own.
	SetUser  bool
	UID, GID uint32
	Limits   Limits
	// Launcher is the argv prefix of the launcher, e.g.
	// ["/usr/local/bin/outpost", "executor-launch"]. Required when Limits
	// sets anything.
	Launcher []string
}

// Limits are a job's resource limits; zero means unlimited (inherited).
// MemoryBytes and CPUs are for the whole job and go into its cgroup (see
// Host); the others are rlimits of each process.
type Limits struct {
	// MemoryBytes limits the real memory (RAM, no swap) of all the job's
	// processes together, through the job's memory cgroup; a step that
	// allocates past it is killed by the kernel. Without a Host, or on a
	// host with no memory cgroup, it becomes each process's RLIMIT_AS
	// instead (unless AddressSpace is lower), which the Host logs once.
	MemoryBytes uint64
	// CPUs is the CPU share of all the job's processes together, in
	// cores (1.5 = one and a half), as a cgroup CPU quota. A job that sets
	// it is refused where there is no cpu cgroup: no rlimit can stand in.
	CPUs float64

	AddressSpace uint64 // RLIMIT_AS, bytes
	Processes    uint64 // RLIMIT_NPROC (counted per user)
	OpenFiles    uint64 // RLIMIT_NOFILE
	CPUSeconds   uint64 // RLIMIT_CPU
	FileSize     uint64 // RLIMIT_FSIZE, bytes
}

func (l Limits) any() bool {
	return l.AddressSpace+l.Processes+l.OpenFiles+l.CPUSeconds+l.FileSize > 0
}

// LauncherCommand is the outpost subcommand that runs LaunchMain.
const LauncherCommand = "executor-launch"

// limitFlags maps launcher flags to rlimit resources, in a fixed order.
var limitFlags = []struct {
	flag     string
	resource int
	get      func(Limits) uint64
}{
	{"as", unix.RLIMIT_AS, func(l Limits) uint64 { return l.AddressSpace }},
	{"nproc", unix.RLIMIT_NPROC, func(l Limits) uint64 { return l.Processes }},
	{"nofile", unix.RLIMIT_NOFILE, func(l Limits) uint64 { return l.OpenFiles }},
	{"cpu", unix.RLIMIT_CPU, func(l Limits) uint64 { return l.CPUSeconds }},
	{"fsize", unix.RLIMIT_FSIZE, func(l Limits) uint64 { return l.FileSize }},
}

// wrap returns the program and argv that start path/argv under the
// isolation's limits and in cgroups (cgroup directories the launcher moves
// itself into before it execs the step).
func (iso *Isolation) wrap(path string, argv []string, cgroups []string) (string, []string, error) {
	if (iso == nil || !iso.Limits.any()) && len(cgroups) == 0 {
		return path, argv, nil
	}
	if iso == nil || len(iso.Launcher) == 0 {
		return "", nil, errors.New("resource limits need a launcher, and none is configured")
	}
	args := append([]string(nil), iso.Launcher...)
	for _, d := range cgroups {
		args = append(args, "-cgroup="+d)
	}
	for _, f := range limitFlags {
		if v := f.get(iso.Limits); v > 0 {
			args = append(args, "-"+f.flag+"="+strconv.FormatUint(v, 10))
		}
	}
	args = append(args, "--", path)
	args = append(args, argv...)
	return iso.Launcher[0], args, nil
}

// sysProcAttr starts the step in a new session (which is also a new process
// group, so signalling the group still reaches all of it), as the
// isolation's user when one is set.
func (iso *Isolation) sysProcAttr() *syscall.SysProcAttr {
	// Pdeathsig: if the runner dies (SIGKILL, OOM killer), the step dies
	// with it rather than running on unsupervised while the servers hand
	// the job to another runner.
	if iso == nil {
		return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if iso.SetUser {
		attr.Credential = &syscall.Credential{Uid: iso.UID, Gid: iso.GID, NoSetGroups: false}
	}
	return attr
}

// LaunchMain is the launcher: args are limit flags, "--", the program's
// path, then its argv (argv[0] first). It moves this process into the
// cgroups given with -cgroup=DIR, sets the limits on itself and execs the
// program; it returns only on error. Moving itself before the exec is
// what makes the placement race-free: nothing of the step exists yet.
func LaunchMain(args []string, env []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("executor-launch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vals := make([]uint64, len(limitFlags))
	for i, f := range limitFlags {
		fs.Uint64Var(&vals[i], f.flag, 0, "")
	}
	var cgroups []string
	fs.Func("cgroup", "a cgroup directory to move into", func(s string) error {
		cgroups = append(cgroups, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 125
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fmt.Fprintln(stderr, "executor-launch: want limit flags, --, the program's path and its argv")
		return 125
	}
	for _, d := range cgroups {
		// "0" is the writing process, all of its threads.
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte("0"), 0); err != nil {
			fmt.Fprintf(stderr, "executor-launch: joining cgroup: %v\n", err)
			return 125
		}
	}
	for i, f := range limitFlags {
		if vals[i] == 0 {
			continue
		}
		lim := &unix.Rlimit{Cur: vals[i], Max: vals[i]}
		if err := unix.Setrlimit(f.resource, lim); err != nil {
			fmt.Fprintf(stderr, "executor-launch: setting %s limit to %d: %v\n", f.flag, vals[i], err)
			return 125
		}
	}
	err := unix.Exec(rest[0], rest[1:], env)
	fmt.Fprintf(stderr, "executor-launch: exec %s: %v\n", rest[0], err)
	return 126
}
