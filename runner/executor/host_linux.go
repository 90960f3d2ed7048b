package executor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostOS is what NewHost found on Linux.
type hostOS struct {
	self int // this process

	// v2Parent is the runner's parent cgroup in the unified hierarchy
	// ("" when it is not used), v2Kill whether cgroup.kill exists there,
	// and v2Memory and v2CPU whether job cgroups get those controllers.
	v2Parent         string
	v2Own            string // the runner's own cgroup, above v2Parent
	v2Kill           bool
	v2Memory, v2CPU  bool
	v1               []v1Hierarchy
	sweeper          *sweeper // ContainmentProcesses
	memoryController string   // "cgroup v2", "cgroup v1" or ""
	cpuController    string
}

// v1Hierarchy is one mounted v1 hierarchy the executor uses: the
// controllers bound to it that it uses, the runner's own cgroup there
// (where a thread returns after starting a step) and the runner's parent
// cgroup under it.
type v1Hierarchy struct {
	controllers []string
	own, parent string
}

func (v v1Hierarchy) has(c string) bool { return slices.Contains(v.controllers, c) }

func (h *Host) probe(force Containment) error {
	o := &h.os
	o.self = os.Getpid()
	var why []string // what could not be used, for the log line

	var mounts []cgroupMount
	var own map[string]string
	if force != ContainmentProcesses {
		var err error
		if mounts, err = readCgroupMounts(); err == nil {
			own, err = procCgroups()
		}
		if err != nil {
			why = append(why, "reading the cgroup layout: "+err.Error())
		}
	}

	if mounts != nil && force != ContainmentCgroup1 {
		if err := h.probeV2(mounts, own); err != nil {
			why = append(why, "cgroup v2: "+err.Error())
			o.v2Parent = ""
		}
	}
	if force == ContainmentCgroup2 && o.v2Parent == "" {
		return fmt.Errorf("cgroup v2 containment is not available here: %s", strings.Join(why, "; "))
	}
	if mounts != nil {
		// Alongside the unified hierarchy only what it lacks; alone,
		// every controller that helps contain and measure the job.
		want := v1Controllers
		if o.v2Parent != "" {
			want = nil
			if !o.v2Memory {
				want = append(want, "memory")
			}
			if !o.v2CPU {
				want = append(want, "cpu")
			}
		}
		why = append(why, h.probeV1(mounts, own, want)...)
	}

	switch {
	case o.v2Parent != "":
		h.containment = ContainmentCgroup2
	case len(o.v1) > 0 && force != ContainmentProcesses:
		h.containment = ContainmentCgroup1
	case force == ContainmentCgroup1:
		return fmt.Errorf("cgroup v1 containment is not available here: %s", strings.Join(why, "; "))
	default:
		h.containment = ContainmentProcesses
		o.v1 = nil
		// Orphans of the job's processes re-parent to us instead of
		// init, where the sweep at job end can find (and reap) them.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			why = append(why, "PR_SET_CHILD_SUBREAPER: "+err.Error())
		}
		o.sweeper = newSweeper(o.self)
	}

	if o.v2Memory {
		o.memoryController = "cgroup v2"
	} else if slices.ContainsFunc(o.v1, func(v v1Hierarchy) bool { return v.has("memory") }) {
		o.memoryController = "cgroup v1"
	}
	if o.v2CPU {
		o.cpuController = "cgroup v2"
	} else if slices.ContainsFunc(o.v1, func(v v1Hierarchy) bool { return v.has("cpu") }) {
		o.cpuController = "cgroup v1"
	}

	if n := h.sweepStale(); n > 0 {
		h.logger.Warn("killed what a previous run of this runner left behind", "job_cgroups", n)
	}
	h.desc = h.describe(why)
	return nil
}

// probeV2 sets up the runner's parent cgroup in the unified hierarchy and
// checks that a process can be started straight into a cgroup there.
func (h *Host) probeV2(mounts []cgroupMount, own map[string]string) error {
	o := &h.os
	path, ok := own[""]
	if !ok {
		return errors.New("this process has no unified-hierarchy cgroup")
	}
	var ownDir string
	for _, m := range mounts {
		if m.v2 {
			if ownDir = cgroupDir(m, path); ownDir != "" {
				break
			}
		}
	}
	if ownDir == "" {
		return errors.New("no cgroup2 mount shows this process's cgroup " + path)
	}

	// Controllers for job cgroups must be enabled in every cgroup above
	// them. A pure v2 host has them in ours; a hybrid one has none.
	var enable []string
	if avail, err := os.ReadFile(filepath.Join(ownDir, "cgroup.controllers")); err == nil {
		for _, c := range []string{"memory", "cpu"} {
			if slices.Contains(strings.Fields(string(avail)), c) {
				enable = append(enable, c)
			}
		}
	}
	if len(enable) > 0 {
		var err error
		if enable, err = h.enableV2Controllers(ownDir, enable); err != nil {
			h.logger.Warn("no memory or cpu limits through cgroup v2", "error", err)
		}
	}

	parent := filepath.Join(ownDir, h.parentName())
	if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	o.v2Parent = parent
	o.v2Own = ownDir
	if len(enable) > 0 {
		ctl := "+" + strings.Join(enable, " +")
		if err := writeCgroupFile(filepath.Join(parent, "cgroup.subtree_control"), ctl); err != nil {
			h.logger.Warn("no memory or cpu limits through cgroup v2", "error", err)
			enable = nil
		}
	}
	o.v2Memory, o.v2CPU = slices.Contains(enable, "memory"), slices.Contains(enable, "cpu")
	return h.checkCloneIntoCgroup(parent)
}

// enableV2Controllers makes the controllers available to cgroups below
// ownDir. The kernel refuses while ownDir holds processes ("no internal
// processes"), which is the case of a runner alone in a delegated systemd
// unit: it then moves itself into a leaf cgroup beside its jobs' parent,
// as systemd's delegation rules ask. With other processes in its cgroup
// it leaves them alone and does without.
func (h *Host) enableV2Controllers(ownDir string, want []string) ([]string, error) {
	ctl := filepath.Join(ownDir, "cgroup.subtree_control")
	if cur, err := os.ReadFile(ctl); err == nil {
		missing := slices.DeleteFunc(slices.Clone(want), func(c string) bool { return slices.Contains(strings.Fields(string(cur)), c) })
		if len(missing) == 0 {
			return want, nil
		}
	}
	err := writeCgroupFile(ctl, "+"+strings.Join(want, " +"))
	if err == nil || !errors.Is(err, unix.EBUSY) {
		if err != nil {
			return nil, err
		}
		return want, nil
	}
	procs := procsIn(ownDir)
	if len(procs) != 1 || procs[0] != h.os.self {
		return nil, fmt.Errorf("%w (other processes share the runner's cgroup %s; run the runner in a cgroup of its own, e.g. a systemd unit with Delegate=yes)", err, ownDir)
	}
	leaf := filepath.Join(ownDir, "outpost-"+h.name+"-runner")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := writeCgroupFile(filepath.Join(leaf, "cgroup.procs"), "0"); err != nil {
		return nil, err
	}
	h.logger.Info("moved the runner into a leaf cgroup so that its jobs' cgroups can have controllers", "cgroup", leaf)
	if err := writeCgroupFile(ctl, "+"+strings.Join(want, " +")); err != nil {
		return nil, err
	}
	return want, nil
}

// checkCloneIntoCgroup starts a process straight into a cgroup
// (clone3 with CLONE_INTO_CGROUP, Linux 5.7), which is how steps start.
func (h *Host) checkCloneIntoCgroup(parent string) error {
	dir := filepath.Join(parent, "probe-"+strconv.Itoa(h.os.self))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	defer removeCgroup(dir)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	cmd := exec.Command(shellPath, "-c", "exit 0")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("starting a process into a cgroup (clone3 CLONE_INTO_CGROUP, Linux 5.7+): %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err == nil {
		h.os.v2Kill = true
	}
	return nil
}

// probeV1 creates the runner's parent cgroup in each v1 hierarchy that
// has one of want, and says what it could not use.
func (h *Host) probeV1(mounts []cgroupMount, own map[string]string, want []string) (why []string) {
	o := &h.os
	seen := map[string]bool{}
	for _, c := range want {
		for _, m := range mounts {
			if m.v2 || !slices.Contains(m.controllers, c) || seen[m.point] {
				continue
			}
			seen[m.point] = true
			ownDir := cgroupDir(m, own[c])
			if _, ok := own[c]; !ok || ownDir == "" {
				why = append(why, fmt.Sprintf("cgroup v1 %s: this process's cgroup is not visible at %s", c, m.point))
				break
			}
			parent := filepath.Join(ownDir, h.parentName())
			if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				why = append(why, fmt.Sprintf("cgroup v1 %s: %v", c, err))
				break
			}
			var ctrls []string
			for _, mc := range m.controllers {
				if slices.Contains(want, mc) {
					ctrls = append(ctrls, mc)
				}
			}
			o.v1 = append(o.v1, v1Hierarchy{controllers: ctrls, own: ownDir, parent: parent})
			break
		}
	}
	return why
}

// parentName names this runner process's parent cgroup: by the runner's
// name and its pid, as two runners of one name may run on one host at once
// (two dev agents, both "dev-runner"), and neither may sweep the other's
// jobs.
func (h *Host) parentName() string {
	return "outpost-" + h.name + "-" + strconv.Itoa(h.os.self)
}

// staleParents lists the parent cgroups in dir of runner processes that
// are dead: an earlier life of this runner, or another runner that shared
// its cgroup. Their jobs outlived them; nothing else will end them.
func (h *Host) staleParents(dir string) []string {
	var out []string
	for _, d := range childDirs(dir) {
		base := filepath.Base(d)
		i := strings.LastIndexByte(base, '-')
		if !strings.HasPrefix(base, "outpost-") || i < 0 {
			continue
		}
		pid, err := strconv.Atoi(base[i+1:])
		if err != nil || pid <= 0 || pid == h.os.self {
			continue
		}
		if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
			continue // its runner still lives
		}
		out = append(out, d)
	}
	return out
}

// sweepStale kills and removes the job cgroups an earlier process of this
// runner left (it crashed, or was killed, with jobs running), and reports
// how many there were.
func (h *Host) sweepStale() int {
	o := &h.os
	names := map[string]bool{}
	if o.v2Parent != "" {
		for _, parent := range h.staleParents(o.v2Own) {
			for _, d := range childDirs(parent) {
				names[filepath.Base(d)] = true
				if _, err := killV2(d); err != nil {
					h.logger.Warn("stale job cgroup", "cgroup", d, "error", err)
				}
				if err := removeCgroup(d); err != nil {
					h.logger.Warn("stale job cgroup", "error", err)
				}
			}
			_ = removeCgroup(parent)
		}
	}
	byName := map[string][]string{}
	var parents []string
	for _, v := range o.v1 {
		for _, parent := range h.staleParents(v.own) {
			parents = append(parents, parent)
			for _, d := range childDirs(parent) {
				byName[filepath.Base(d)] = append(byName[filepath.Base(d)], d)
			}
		}
	}
	defer func() {
		for _, p := range parents {
			_ = removeCgroup(p)
		}
	}()
	for name, dirs := range byName {
		names[name] = true
		if _, err := killV1(dirs, o.self); err != nil {
			h.logger.Warn("stale job cgroup", "cgroups", dirs, "error", err)
		}
		for _, d := range dirs {
			if err := removeCgroup(d); err != nil {
				h.logger.Warn("stale job cgroup", "error", err)
			}
		}
	}
	return len(names)
}

func childDirs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func (h *Host) describe(why []string) string {
	o := &h.os
	var b strings.Builder
	switch h.containment {
	case ContainmentCgroup2:
		kill := "cgroup.kill"
		if !o.v2Kill {
			kill = "cgroup.freeze, then SIGKILL to each process"
		}
		fmt.Fprintf(&b, "cgroup v2: each job in a cgroup of its own under %s, started into it with clone3, killed with %s", o.v2Parent, kill)
		if len(o.v1) > 0 {
			fmt.Fprintf(&b, "; cgroup v1 %s alongside", v1Names(o.v1))
		}
	case ContainmentCgroup1:
		kill := "SIGKILL to each process until none is left"
		if slices.ContainsFunc(o.v1, func(v v1Hierarchy) bool { return v.has("freezer") }) {
			kill = "the freezer: freeze, SIGKILL each process, thaw"
		}
		fmt.Fprintf(&b, "cgroup v1: each job in cgroups of its own (%s) under %s/, killed with %s", v1Names(o.v1), filepath.Base(o.v1[0].parent), kill)
	case ContainmentProcesses:
		b.WriteString("no cgroups: the runner is a child subreaper; at job end its process groups and the processes that re-parented to the runner with its OUTPOST_JOB_ID are killed")
	}
	mem, cpu := "memory limits: RLIMIT_AS of each process (no memory cgroup)", "cpus limits: refused (no cpu cgroup)"
	if o.memoryController != "" {
		mem = "memory limits and peak memory: " + o.memoryController
	}
	if o.cpuController != "" {
		cpu = "cpus limits: " + o.cpuController
	}
	usage := "CPU time: cgroup v2 cpu.stat"
	switch {
	case h.containment == ContainmentProcesses:
		usage = "CPU time and peak memory: wait4 of each step (the largest process's peak)"
	case o.v2Parent == "" && slices.ContainsFunc(o.v1, func(v v1Hierarchy) bool { return v.has("cpuacct") }):
		usage = "CPU time: cgroup v1 cpuacct"
	case o.v2Parent == "":
		usage = "CPU time: unknown"
	}
	fmt.Fprintf(&b, "; %s; %s; %s", mem, cpu, usage)
	if len(why) > 0 {
		fmt.Fprintf(&b, " (not used: %s)", strings.Join(why, "; "))
	}
	return b.String()
}

func v1Names(vs []v1Hierarchy) string {
	var names []string
	for _, v := range vs {
		names = append(names, v.controllers...)
	}
	return strings.Join(names, ", ")
}

func (h *Host) closeOS() error {
	var errs []error
	if h.os.v2Parent != "" {
		if err := unix.Rmdir(h.os.v2Parent); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	for _, v := range h.os.v1 {
		if err := unix.Rmdir(v.parent); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
