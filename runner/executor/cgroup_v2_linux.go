package executor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killTimeout bounds how long a kill waits for a cgroup to empty. SIGKILL
// cannot be refused, but a process in uninterruptible sleep (a hung NFS
// mount) dies only when the kernel lets it.
const killTimeout = 10 * time.Second

// cpuPeriod is the CFS period for CPU quotas (the kernel's default).
const cpuPeriod = 100 * time.Millisecond

// makeCgroup creates dir for a new job. A directory of that name is left
// over from an execution with the same key (the runner died during it):
// it is emptied and made again, so no stale limits or counters carry over.
func makeCgroup(dir string, kill func(string) (int, error)) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		_, _ = kill(dir)
		if err = removeCgroup(dir); err == nil {
			err = os.Mkdir(dir, 0o755)
		}
	}
	return err
}

// openCgroupFD opens a cgroup directory for CLONE_INTO_CGROUP.
func openCgroupFD(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// setV2Limits sets a v2 job cgroup's memory limit (with no swap, so that
// the limit is on real memory use rather than a point where the job
// starts swapping) and CPU quota; zero leaves one unset.
func setV2Limits(dir string, memory uint64, cpus float64) error {
	if memory > 0 {
		if err := writeCgroupFile(filepath.Join(dir, "memory.max"), strconv.FormatUint(memory, 10)); err != nil {
			return err
		}
		// Absent without swap accounting; then there is nothing to limit.
		if err := writeCgroupFile(filepath.Join(dir, "memory.swap.max"), "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if cpus > 0 {
		quota, period := cpuQuota(cpus)
		if err := writeCgroupFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota, period)); err != nil {
			return err
		}
	}
	return nil
}

// cpuQuota turns a share in cores into a CFS quota per period, in µs.
func cpuQuota(cpus float64) (quota, period int64) {
	period = cpuPeriod.Microseconds()
	// The kernel's minimum quota is 1ms.
	return max(int64(cpus*float64(period)+0.5), 1000), period
}

// killV2 kills every process in the v2 cgroup dir and below, and waits
// until none is left. It reports how many processes were there.
func killV2(dir string) (int, error) {
	if !populatedV2(dir) {
		return 0, nil // the common case: the job left nothing behind
	}
	n := len(cgroupPids(dir))
	err := writeCgroupFile(filepath.Join(dir, "cgroup.kill"), "1")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) {
			return 0, nil // already gone
		}
		// Before Linux 5.14: freeze, so nothing forks while we kill.
		return n, freezeKillV2(dir)
	case err != nil:
		return n, err
	}
	if !pollUntil(killTimeout, func() bool { return !populatedV2(dir) }) {
		return n, fmt.Errorf("processes still in %s %v after SIGKILL: %v", dir, killTimeout, cgroupPids(dir))
	}
	return n, nil
}

// freezeKillV2 is killV2 without cgroup.kill. A frozen task still dies of
// SIGKILL in cgroup v2, so one round usually does; the loop covers a task
// that was forking as the freeze began.
func freezeKillV2(dir string) error {
	freeze := filepath.Join(dir, "cgroup.freeze")
	defer writeCgroupFile(freeze, "0")
	ok := pollUntil(killTimeout, func() bool {
		if err := writeCgroupFile(freeze, "1"); err != nil {
			return true
		}
		pollUntil(time.Second, func() bool { v, _ := readKeyed(filepath.Join(dir, "cgroup.events"), "frozen"); return v == 1 })
		for _, pid := range cgroupPids(dir) {
			_ = unix.Kill(pid, syscall.SIGKILL)
		}
		return pollUntil(100*time.Millisecond, func() bool { return !populatedV2(dir) })
	})
	if !ok {
		return fmt.Errorf("processes still in %s %v after SIGKILL: %v", dir, killTimeout, cgroupPids(dir))
	}
	return nil
}

func populatedV2(dir string) bool {
	v, ok := readKeyed(filepath.Join(dir, "cgroup.events"), "populated")
	if !ok {
		// Gone, or not a v2 cgroup: go by the process list.
		return len(cgroupPids(dir)) > 0
	}
	return v != 0
}

// v2Usage reads a v2 job cgroup's CPU time (always there: the cgroup core
// keeps it) and peak memory (with the memory controller, Linux 5.19+).
func v2Usage(dir string) (cpu time.Duration, peak uint64, havePeak bool) {
	if us, ok := readKeyed(filepath.Join(dir, "cpu.stat"), "usage_usec"); ok {
		cpu = time.Duration(us) * time.Microsecond
	}
	peak, havePeak = readUint(filepath.Join(dir, "memory.peak"))
	return cpu, peak, havePeak
}
