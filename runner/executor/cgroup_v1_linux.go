package executor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setV1Limits sets the limits a v1 job cgroup's controllers carry.
func setV1Limits(v v1Hierarchy, dir string, memory uint64, cpus float64) error {
	if memory > 0 && v.has("memory") {
		if err := writeCgroupFile(filepath.Join(dir, "memory.limit_in_bytes"), strconv.FormatUint(memory, 10)); err != nil {
			return err
		}
		// Memory plus swap, so the job cannot swap its way past the
		// limit. Absent without swap accounting.
		if err := writeCgroupFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), strconv.FormatUint(memory, 10)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if cpus > 0 && v.has("cpu") {
		quota, period := cpuQuota(cpus)
		if err := writeCgroupFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatInt(period, 10)); err != nil {
			return err
		}
		if err := writeCgroupFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10)); err != nil {
			return err
		}
	}
	return nil
}

// startInV1 runs start (which forks) on an OS thread that has first been
// moved into the v1 cgroups dirs, and moves the thread back to the
// runner's cgroups (home) afterwards.
//
// Why a thread: v1 membership is per thread, and a child starts in the
// cgroups of the thread that forked it. Moving the child after the fork
// would race with it: a step's shell can fork before the move, and those
// children would stay outside. The other race-free way, starting each step
// through the executor-launch launcher that moves itself before it execs
// the step, costs an extra exec of the outpost binary, about 6ms a step on
// the development machine; writing "0" to a `tasks` file moves only the
// calling thread and skips the kernel's global cgroup lock, so the moves
// here cost about 0.1ms for a whole start (measured with /bin/true steps,
// see the report in the commit).
//
// While it is moved the thread is charged for what the kernel allocates
// for the fork, and counts against the job's CPU quota (a throttled job
// can delay its next step's start by up to a CFS period). It is never
// moved into a memory cgroup with a limit: an OOM kill there picks among
// the cgroup's tasks, and the runner must not be one; such a job's memory
// cgroup is entered by the launcher instead (jobContainer.launchDirs).
func startInV1(dirs, home []string, start func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := moveThread(dirs)
		if err == nil {
			err = start()
		}
		if backErr := moveThread(home); backErr != nil {
			// A thread that cannot leave a job's cgroups must not run
			// anything else: exiting this goroutine while still locked
			// ends the thread. (The step it started gets its Pdeathsig
			// then; the job fails with this error.)
			errc <- errors.Join(err, fmt.Errorf("moving the runner's thread back out of the job's cgroups: %w", backErr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// moveThread moves the calling thread into each cgroup in dirs.
func moveThread(dirs []string) error {
	for _, d := range dirs {
		if err := writeCgroupFile(filepath.Join(d, "tasks"), "0"); err != nil {
			return err
		}
	}
	return nil
}

// killV1 kills every process in the v1 cgroups dirs (one job's, one per
// hierarchy) and below, except the processes in exclude, and waits until
// none is left. With a freezer cgroup among dirs the job is frozen first,
// so nothing forks or exits (and no pid is reused) between reading the
// process list and signalling it; without one, the pids controller stops
// forks and the loop repeats until the cgroups stay empty. It reports how
// many processes it killed.
//
// exclude is for the runner itself: a v1 cgroup.procs lists a process as
// soon as one of its threads is in the cgroup, and a runner thread is in
// there while it starts a step.
func killV1(dirs []string, exclude ...int) (int, error) {
	var freezer, pids string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "freezer.state")); err == nil {
			freezer = d
		}
		if _, err := os.Stat(filepath.Join(d, "pids.max")); err == nil {
			pids = d
		}
	}
	list := func() []int {
		var out []int
		for _, d := range dirs {
			for _, pid := range cgroupPids(d) {
				if !slices.Contains(exclude, pid) && !slices.Contains(out, pid) {
					out = append(out, pid)
				}
			}
		}
		return out
	}

	if len(list()) == 0 {
		return 0, nil // the common case: the job left nothing behind
	}
	if freezer == "" && pids != "" {
		_ = writeCgroupFile(filepath.Join(pids, "pids.max"), "0")
	}
	killed := map[int]bool{}
	ok := pollUntil(killTimeout, func() bool {
		if freezer != "" {
			freeze(freezer)
		}
		for _, pid := range list() {
			if unix.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		if freezer != "" {
			// Frozen tasks act on SIGKILL once thawed.
			_ = writeCgroupFile(filepath.Join(freezer, "freezer.state"), "THAWED")
		}
		return pollUntil(100*time.Millisecond, func() bool { return len(list()) == 0 })
	})
	if !ok {
		return len(killed), fmt.Errorf("processes still in %s %v after SIGKILL: %v", strings.Join(dirs, ", "), killTimeout, list())
	}
	return len(killed), nil
}

// freeze freezes a v1 freezer cgroup, waiting a little for FREEZING to
// become FROZEN; a task in uninterruptible sleep can hold it in FREEZING,
// and then the kill goes ahead anyway and the caller's loop repeats.
func freeze(dir string) {
	state := filepath.Join(dir, "freezer.state")
	if writeCgroupFile(state, "FROZEN") != nil {
		return
	}
	pollUntil(time.Second, func() bool {
		b, err := os.ReadFile(state)
		return err != nil || strings.TrimSpace(string(b)) == "FROZEN"
	})
}

// v1Usage reads a job's CPU time (cpuacct) and peak memory (memory) from
// its v1 cgroups, where it has them.
func v1Usage(vs []v1Hierarchy, dirs []string) (cpu time.Duration, haveCPU bool, peak uint64, havePeak bool) {
	for i, v := range vs {
		if v.has("cpuacct") {
			var ns uint64
			if ns, haveCPU = readUint(filepath.Join(dirs[i], "cpuacct.usage")); haveCPU {
				cpu = time.Duration(ns)
			}
		}
		if v.has("memory") {
			peak, havePeak = readUint(filepath.Join(dirs[i], "memory.max_usage_in_bytes"))
		}
	}
	return cpu, haveCPU, peak, havePeak
}
