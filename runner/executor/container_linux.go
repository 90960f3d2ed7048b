package executor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// jobContainer holds one job's processes: cgroups of its own, or for
// ContainmentProcesses the bookkeeping of a sweep.
type jobContainer struct {
	h     *Host
	key   string
	jobID string

	v2   string // the job's v2 cgroup, or ""
	v2fd int    // open on v2 for CLONE_INTO_CGROUP, or -1
	// v1 are the hierarchies the job has a cgroup in, v1Dirs those
	// cgroups; enter are the ones a runner thread enters to start a step
	// (startInV1), launch the ones the launcher moves the step into.
	v1            []v1Hierarchy
	v1Dirs        []string
	enter, home   []string
	launch        []string
	sweep         *jobSweep
	rusageCPU     time.Duration // ContainmentProcesses: from wait4
	rusagePeak    uint64
	mu            sync.Mutex
	killed        int
	clean         bool // kill found nothing left since the last step started
	watched       bool
	processLimits bool // the memory limit goes to RLIMIT_AS instead
}

// contain makes the container for one job, with its limits applied,
// before any of its processes exist. iso, if set, is how the job's
// processes run (their user matters to the launcher).
func (h *Host) contain(key, jobID string, lim Limits, iso *Isolation) (*jobContainer, error) {
	o := &h.os
	c := &jobContainer{h: h, key: key, jobID: jobID, v2fd: -1}
	if lim.CPUs > 0 && o.cpuController == "" {
		return nil, fmt.Errorf("the job asks for cpus = %g, but this runner cannot set a CPU quota: it has no cpu cgroup (containment %q); run the job on a runner with one, or drop the cpus limit", lim.CPUs, h.containment)
	}
	ok := false
	defer func() {
		if !ok {
			c.remove()
		}
	}()

	if o.v2Parent != "" {
		c.v2 = filepath.Join(o.v2Parent, key)
		if err := makeCgroup(c.v2, killV2); err != nil {
			return nil, err
		}
		var mem uint64
		var cpus float64
		if o.v2Memory {
			mem = lim.MemoryBytes
		}
		if o.v2CPU {
			cpus = lim.CPUs
		}
		if err := setV2Limits(c.v2, mem, cpus); err != nil {
			return nil, err
		}
		fd, err := openCgroupFD(c.v2)
		if err != nil {
			return nil, err
		}
		c.v2fd = fd
	}

	for _, v := range o.v1 {
		// A hierarchy that only carries the CPU quota is skipped when
		// the job has none: one directory less to make and enter.
		if !v.has("memory") && !v.has("cpuacct") && !v.has("pids") && !v.has("freezer") && lim.CPUs == 0 {
			continue
		}
		dir := filepath.Join(v.parent, key)
		c.v1, c.v1Dirs = append(c.v1, v), append(c.v1Dirs, dir)
		if err := makeCgroup(dir, func(d string) (int, error) { return killV1([]string{d}, o.self) }); err != nil {
			return nil, err
		}
		if err := setV1Limits(v, dir, lim.MemoryBytes, lim.CPUs); err != nil {
			return nil, err
		}
		if v.has("memory") && lim.MemoryBytes > 0 {
			c.launch = append(c.launch, dir)
			if iso != nil && iso.SetUser {
				// The launcher runs as the job's user by then, and
				// moves itself: it needs this one file, nothing else of
				// the cgroup (its limits stay root's).
				if err := os.Chown(filepath.Join(dir, "cgroup.procs"), int(iso.UID), int(iso.GID)); err != nil {
					return nil, err
				}
			}
		} else {
			c.enter, c.home = append(c.enter, dir), append(c.home, v.own)
		}
	}

	if o.sweeper != nil {
		c.sweep = o.sweeper.job(jobID)
	}
	if lim.MemoryBytes > 0 && o.memoryController == "" {
		c.processLimits = true
		h.rlimitASOnce.Do(func() {
			h.logger.Warn("no memory cgroup here: memory limits are RLIMIT_AS (address space) of each process instead")
		})
	}
	c.watch()
	ok = true
	return c, nil
}

// describe is the container as a Watchdog sees it.
func (c *jobContainer) describe() Container {
	d := Container{Key: c.key}
	if c.v2 != "" {
		d.Cgroups = append(d.Cgroups, c.v2)
	}
	d.Cgroups = append(d.Cgroups, c.v1Dirs...)
	if c.sweep != nil {
		d.Groups, d.JobID = c.sweep.groupList(), c.jobID
	}
	return d
}

func (c *jobContainer) watch() {
	if c.h.watchdog == nil {
		return
	}
	if err := c.h.watchdog.Watch(c.describe()); err != nil {
		c.h.logger.Error("watchdog not told of a job container: if this runner freezes, nothing kills the job", "job", c.jobID, "key", c.key, "error", err)
		return
	}
	c.watched = true
}

// start starts cmd inside the container.
func (c *jobContainer) start(cmd *exec.Cmd) error {
	if c.v2fd >= 0 {
		attr := *cmd.SysProcAttr
		attr.UseCgroupFD, attr.CgroupFD = true, c.v2fd
		cmd.SysProcAttr = &attr
	}
	var err error
	if len(c.enter) > 0 {
		err = startInV1(c.enter, c.home, cmd.Start)
	} else {
		err = cmd.Start()
	}
	if err == nil && c.sweep != nil {
		c.sweep.started(cmd.Process.Pid)
		c.watch()
	}
	c.clean = false
	return err
}

// memoryAsRlimit says that the job's memory limit could not go into a
// cgroup, so it must be RLIMIT_AS.
func (c *jobContainer) memoryAsRlimit() bool { return c.processLimits }

// launchDirs are the cgroups the launcher must move a step into.
func (c *jobContainer) launchDirs() []string { return c.launch }

// stepEnded is told of each step process once it has been reaped;
// ending says the job ends with it.
func (c *jobContainer) stepEnded(pid int, state *os.ProcessState, ending bool) {
	if c.sweep == nil {
		return
	}
	c.sweep.reaped(pid)
	if state != nil {
		if ru, ok := state.SysUsage().(*syscall.Rusage); ok {
			c.rusageCPU += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			c.rusagePeak = max(c.rusagePeak, uint64(ru.Maxrss)*1024)
		}
	}
	if !ending {
		// The step's orphans have just re-parented: note them while
		// they are alive (the kill that ends the job looks anyway).
		c.sweep.observe()
	}
}

// kill kills every process left in the container and waits until none is
// left. It reports how many it has killed in all calls so far.
func (c *jobContainer) kill() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int
	var err error
	if c.clean {
		return c.killed
	}
	if c.sweep == nil && isSubreaper() {
		var pids []int
		for _, d := range slices.Concat([]string{c.v2}, c.v1Dirs) {
			if d != "" {
				pids = append(pids, cgroupPids(d)...)
			}
		}
		defer reapOrphans(pids, c.h.os.self)
	}
	switch {
	case c.v2 != "":
		n, err = killV2(c.v2)
		if len(c.v1Dirs) > 0 {
			// The same processes; this only waits for the v1 side to
			// catch up (and kills one a job moved out of the v2 cgroup).
			_, err1 := killV1(c.v1Dirs, c.h.os.self)
			err = errors.Join(err, err1)
		}
	case len(c.v1Dirs) > 0:
		n, err = killV1(c.v1Dirs, c.h.os.self)
	case c.sweep != nil:
		n, err = c.sweep.kill()
	}
	// Once emptied, nothing of the job can come back unless another step
	// starts: Run's second call (at the job's end) has nothing to do.
	c.clean = err == nil
	if err != nil {
		c.h.logger.Error("killing a job's processes", "job", c.jobID, "key", c.key, "error", err)
	}
	c.killed += n
	return c.killed
}

func isSubreaper() bool {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return err == nil && v != 0
}

// reapOrphans collects those of pids (killed processes of a job cgroup)
// that re-parented to this process and are now zombies. That happens only
// when something made this process a child subreaper (a Host with
// ContainmentProcesses in the same process): they are surely the job's,
// as they were in its cgroup, and nobody else would collect them.
func reapOrphans(pids []int, self int) {
	for _, pid := range pids {
		if st, err := readProcStat(pid); err == nil && st.ppid == self && st.state == 'Z' {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// usage reports the job's CPU time and peak memory, zero where unknown.
func (c *jobContainer) usage() (cpu time.Duration, peak uint64) {
	if c.sweep != nil {
		return c.rusageCPU, c.rusagePeak
	}
	var havePeak bool
	if c.v2 != "" {
		cpu, peak, havePeak = v2Usage(c.v2)
	}
	v1CPU, haveV1CPU, v1Peak, haveV1Peak := v1Usage(c.v1, c.v1Dirs)
	if c.v2 == "" && haveV1CPU {
		cpu = v1CPU
	}
	if !havePeak && haveV1Peak {
		peak = v1Peak
	}
	return cpu, peak
}

// oomKills reports how many processes the kernel killed for reaching the
// job's memory limit.
func (c *jobContainer) oomKills() uint64 {
	if c.v2 != "" {
		if n, ok := readKeyed(filepath.Join(c.v2, "memory.events"), "oom_kill"); ok && n > 0 {
			return n
		}
	}
	for i, v := range c.v1 {
		if v.has("memory") {
			n, _ := readKeyed(filepath.Join(c.v1Dirs[i], "memory.oom_control"), "oom_kill")
			return n
		}
	}
	return 0
}

// remove deletes the job's cgroups and tells the watchdog; kill first.
func (c *jobContainer) remove() {
	if c.v2fd >= 0 {
		unix.Close(c.v2fd)
		c.v2fd = -1
	}
	for _, d := range slices.Concat([]string{c.v2}, c.v1Dirs) {
		if d == "" {
			continue
		}
		if err := removeCgroup(d); err != nil {
			c.h.logger.Warn("job cgroup left behind (the next start of this runner removes it)", "error", err)
		}
	}
	if c.watched {
		if err := c.h.watchdog.Forget(c.key); err != nil {
			c.h.logger.Warn("watchdog not told a job container is gone", "key", c.key, "error", err)
		}
	}
}

// KillContainer kills every process of a job container and waits until
// none is left, for a process outside the runner (the watchdog). It
// reports how many processes it killed. exclude are pids never signalled
// (the runner, which may have a thread in a v1 cgroup of the job while
// it starts a step).
func KillContainer(c Container, exclude ...int) (int, error) {
	var n int
	var errs []error
	var v1 []string
	for _, d := range c.Cgroups {
		if _, err := os.Stat(filepath.Join(d, "cgroup.events")); err == nil {
			k, err := killV2(d)
			n = max(n, k)
			errs = append(errs, err)
		} else if _, err := os.Stat(d); err == nil {
			v1 = append(v1, d)
		}
	}
	if len(v1) > 0 {
		k, err := killV1(v1, append(exclude, os.Getpid())...)
		n = max(n, k)
		errs = append(errs, err)
	}
	if c.JobID != "" {
		k, err := sweepByEnv([]byte("OUTPOST_JOB_ID="+c.JobID), c.Groups, append(exclude, os.Getpid())...)
		n += k
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}
