package executor

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Containment without cgroups. The runner is a child subreaper, so a
// process whose parent dies re-parents to the runner rather than to init,
// and every step runs in a process group of its own. A job's processes are
// recognised in /proc by the OUTPOST_JOB_ID=<id> in their environment
// (which the executor sets for every step) together with a link to the
// job: their process group or session is one of the job's, or their parent
// is the runner. The environment alone is not enough: any process may
// copy it. A process that clears its environment and leaves the job's
// group and session escapes; only cgroups contain that.

// sweeper is a Host's bookkeeping for ContainmentProcesses.
type sweeper struct {
	self, selfPgid, selfSid int

	mu sync.Mutex
	// leaders are step processes being supervised: their exit status is
	// for their own Wait, so a sweep never reaps them.
	leaders map[int]bool
}

func newSweeper(self int) *sweeper {
	pgid, _ := unix.Getpgid(self)
	sid, _ := unix.Getsid(self)
	return &sweeper{self: self, selfPgid: pgid, selfSid: sid, leaders: map[int]bool{}}
}

// jobSweep is one job's part: what identifies its processes.
type jobSweep struct {
	s      *sweeper
	marker []byte // "OUTPOST_JOB_ID=<id>"
	// groups and sessions are the job's steps' (a step leader's pid is
	// its group id, and its session id too when it has a session of its
	// own) and those seen on the job's processes; seen are the pids of
	// the job's processes found so far. They tell a zombie, which has
	// no environment left, as the job's.
	groups, sessions, seen map[int]bool
}

func (s *sweeper) job(jobID string) *jobSweep {
	return &jobSweep{s: s, marker: []byte("OUTPOST_JOB_ID=" + jobID),
		groups: map[int]bool{}, sessions: map[int]bool{}, seen: map[int]bool{}}
}

// started records a step's leader.
func (j *jobSweep) started(pid int) {
	j.s.mu.Lock()
	j.s.leaders[pid] = true
	j.s.mu.Unlock()
	j.groups[pid], j.sessions[pid] = true, true
}

// reaped drops a leader once its own Wait has collected it.
func (j *jobSweep) reaped(pid int) {
	j.s.mu.Lock()
	delete(j.s.leaders, pid)
	j.s.mu.Unlock()
}

func (j *jobSweep) groupList() []int {
	var out []int
	for g := range j.groups {
		out = append(out, g)
	}
	return out
}

// record notes a process of the job, so that it and the zombies of its
// group and session are known later. The runner's own group and session
// are never the job's.
func (j *jobSweep) record(p procStat) {
	j.seen[p.pid] = true
	if p.pgid != j.s.selfPgid {
		j.groups[p.pgid] = true
	}
	if p.sid != j.s.selfSid {
		j.sessions[p.sid] = true
	}
}

// linked says whether p is connected to the job other than by its
// environment.
func (j *jobSweep) linked(p procStat) bool {
	return p.ppid == j.s.self || j.groups[p.pgid] || j.sessions[p.sid] || j.seen[p.pid]
}

// observe records the job's processes alive now. Run calls it after each
// step, when the orphans of the step's shell have just re-parented.
func (j *jobSweep) observe() {
	for _, p := range scanProcs() {
		if p.pid != j.s.self && p.state != 'Z' && j.linked(p) && hasEnv(p.pid, j.marker) {
			j.record(p)
		}
	}
}

// kill kills the job's processes until none is left and reaps those that
// re-parented to the runner. It reports how many it killed.
func (j *jobSweep) kill() (int, error) {
	killed := map[int]bool{}
	ok := pollUntil(killTimeout, func() bool {
		var victims []procStat
		for _, p := range scanProcs() {
			switch {
			case p.pid == j.s.self:
			case p.state == 'Z':
				j.reap(p)
			// One killed before and still dying has given up its memory,
			// environment included, before it turns zombie: it is still
			// the job's, and must be waited for and reaped, or it stays a
			// zombie of the runner's for good.
			case j.linked(p) && (killed[p.pid] || hasEnv(p.pid, j.marker)):
				victims = append(victims, p)
			}
		}
		if len(victims) == 0 {
			return true
		}
		groups := map[int]bool{}
		for _, p := range victims {
			j.record(p)
			killed[p.pid] = true
			_ = unix.Kill(p.pid, syscall.SIGKILL)
			// A live member of the job (just checked) holds the group's
			// id, so it cannot be an unrelated group's: signalling the
			// group reaches members that cleared their environment and
			// cannot miss a fork in progress.
			if p.pgid != j.s.selfPgid {
				groups[p.pgid] = true
			}
		}
		for g := range groups {
			_ = unix.Kill(-g, syscall.SIGKILL)
		}
		// Let them die (and re-parent their children) before looking again.
		pollUntil(50*time.Millisecond, func() bool {
			for _, p := range victims {
				if st, err := readProcStat(p.pid); err == nil && st.state != 'Z' {
					return false
				}
			}
			return true
		})
		return false
	})
	// The last round found no victim left and reaped what had died; only
	// after a timeout may zombies be left to collect.
	if !ok {
		for _, p := range scanProcs() {
			if p.state == 'Z' {
				j.reap(p)
			}
		}
		return len(killed), errors.New("processes of the job still running after SIGKILL")
	}
	return len(killed), nil
}

// reap collects a zombie that re-parented to the runner, if it is the
// job's and not a step leader whose own Wait will collect it.
func (j *jobSweep) reap(p procStat) {
	if p.ppid != j.s.self || !(j.groups[p.pgid] || j.sessions[p.sid] || j.seen[p.pid]) {
		return
	}
	j.s.mu.Lock()
	leader := j.s.leaders[p.pid]
	j.s.mu.Unlock()
	if !leader {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(p.pid, &ws, unix.WNOHANG, nil)
	}
}

// sweepByEnv kills every process carrying marker in its environment and
// the process groups they are in, until none is left: KillContainer's
// sweep, from outside the runner, which may be dead (its orphans then
// belong to init) or frozen. exclude are never signalled.
func sweepByEnv(marker []byte, groups []int, exclude ...int) (int, error) {
	killed := map[int]bool{}
	isExcluded := func(pid int) bool {
		for _, e := range exclude {
			if e == pid {
				return true
			}
		}
		return false
	}
	ok := pollUntil(killTimeout, func() bool {
		var victims []procStat
		for _, p := range scanProcs() {
			if p.state != 'Z' && !isExcluded(p.pid) && hasEnv(p.pid, marker) {
				victims = append(victims, p)
			}
		}
		if len(victims) == 0 {
			return true
		}
		members := map[int]bool{}
		for _, p := range victims {
			killed[p.pid] = true
			_ = unix.Kill(p.pid, syscall.SIGKILL)
			members[p.pgid] = true
		}
		for _, g := range groups {
			// Only a group with a live member of the job is surely
			// still the job's.
			if members[g] && !isExcluded(g) {
				_ = unix.Kill(-g, syscall.SIGKILL)
			}
		}
		return false
	})
	if !ok {
		return len(killed), errors.New("processes of the job still running after SIGKILL")
	}
	return len(killed), nil
}

// procStat is what a sweep needs from /proc/PID/stat.
type procStat struct {
	pid, ppid, pgid, sid int
	state                byte
}

func scanProcs() []procStat {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	out := make([]procStat, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if st, err := readProcStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and
	// parentheses, so parse from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 4 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed stat")
	}
	st := procStat{pid: pid, state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgid, _ = strconv.Atoi(f[2])
	st.sid, _ = strconv.Atoi(f[3])
	return st, nil
}

// hasEnv reports whether pid's environment holds the entry kv exactly.
func hasEnv(pid int, kv []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for len(b) > 0 {
		entry := b
		if i := bytes.IndexByte(b, 0); i >= 0 {
			entry, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if bytes.Equal(entry, kv) {
			return true
		}
	}
	return false
}
