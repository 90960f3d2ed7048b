package executor

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// Containment is how a Host keeps track of a job's processes so that all of
// them can be killed when the job ends.
type Containment string

const (
	// ContainmentAuto picks the best the host allows, in the order below.
	ContainmentAuto Containment = ""
	// ContainmentCgroup2: a cgroup of the job's own in the unified
	// hierarchy, killed with cgroup.kill. cgroup v1 controllers are used
	// alongside for what the unified hierarchy lacks (a hybrid host).
	ContainmentCgroup2 Containment = "cgroup2"
	// ContainmentCgroup1: cgroups of the job's own in the v1 hierarchies,
	// killed through the freezer.
	ContainmentCgroup1 Containment = "cgroup1"
	// ContainmentProcesses: no cgroups. The runner is a child subreaper,
	// and at job end a sweep of /proc kills the steps' process groups and
	// every process that re-parented to the runner and carries the job's
	// OUTPOST_JOB_ID.
	ContainmentProcesses Containment = "processes"
)

// HostOptions configure NewHost.
type HostOptions struct {
	// Name identifies the runner, stably across its restarts (its id). It
	// names the runner's parent cgroup, outpost-<Name>, under which every
	// job cgroup lives and which the next life of the runner sweeps.
	// Letters, digits, '_', '.' and '-'.
	Name   string
	Logger hclog.Logger
	// Containment forces one kind of containment (tests, or an operator
	// who knows better); NewHost fails if the host does not allow it.
	// ContainmentAuto (the zero value) never fails: it falls back step by
	// step down to ContainmentProcesses.
	Containment Containment
	// Watchdog, if set, is told about every job container, so that a
	// process outside the runner can kill the jobs of a runner that froze
	// or died.
	Watchdog Watchdog
}

// Host is what this machine allows for job containment and limits, probed
// once per runner by NewHost and shared by all of its jobs (it is safe for
// concurrent use). A Spec with a Host runs its job in a container of its
// own, and every process still in it is killed when the job ends.
//
// Process-wide effect: with ContainmentProcesses, NewHost makes the calling
// process a child subreaper (PR_SET_CHILD_SUBREAPER), so orphaned
// descendants of every child of the process re-parent to it rather than
// to init. The flag cannot be scoped to one Host and is never cleared;
// the Host reaps the re-parented processes it can attribute to a job.
type Host struct {
	name        string
	logger      hclog.Logger
	watchdog    Watchdog
	containment Containment
	desc        string
	seq         atomic.Uint64 // for Spec.Key when the caller gives none

	// rlimitASOnce logs once that memory limits fall back to RLIMIT_AS.
	rlimitASOnce sync.Once

	os hostOS // what the platform found; see host_linux.go
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// NewHost probes what this machine allows, sweeps what a previous life of
// the same runner (same Name) left behind, and logs one line saying what
// applies.
func NewHost(opts HostOptions) (*Host, error) {
	if !nameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("host name %q: use 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit", opts.Name)
	}
	switch opts.Containment {
	case ContainmentAuto, ContainmentCgroup2, ContainmentCgroup1, ContainmentProcesses:
	default:
		return nil, fmt.Errorf("unknown containment %q (want %q, %q or %q)", opts.Containment, ContainmentCgroup2, ContainmentCgroup1, ContainmentProcesses)
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &Host{name: opts.Name, logger: logger.Named("containment"), watchdog: opts.Watchdog}
	if err := h.probe(opts.Containment); err != nil {
		return nil, err
	}
	h.logger.Info("job containment: " + h.desc)
	return h, nil
}

// Containment reports the containment this Host uses.
func (h *Host) Containment() Containment { return h.containment }

// Describe says in one line what containment, limits and usage figures
// apply on this host.
func (h *Host) Describe() string { return h.desc }

// Close removes the runner's (empty) parent cgroups. Jobs still running
// keep theirs, and the next NewHost with the same Name sweeps them.
func (h *Host) Close() error { return h.closeOS() }

// Watchdog is told about job containers as they come and go, so that a
// process outside the runner can kill them when the runner cannot (it is
// frozen or dead). Its calls must be quick; an error is logged and the job
// runs on.
type Watchdog interface {
	// Watch registers a container, or replaces its description (the
	// process sweep adds each step's process group as it starts).
	Watch(c Container) error
	// Forget drops a container once all its processes are gone.
	Forget(key string) error
}

// Container says where one job's processes are, for KillContainer.
type Container struct {
	// Key is the execution's Spec.Key.
	Key string
	// Cgroups are job cgroup directories: every process in them, or in
	// a cgroup below them, belongs to the job.
	Cgroups []string
	// Groups are the process groups of the job's steps, and JobID the
	// OUTPOST_JOB_ID its processes carry (ContainmentProcesses).
	Groups []int
	JobID  string
}

// keyRE keeps a Key usable as a cgroup directory name.
var keyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func (h *Host) checkKey(key string) (string, error) {
	if key == "" {
		return "run-" + strconv.FormatUint(h.seq.Add(1), 10), nil
	}
	if !keyRE.MatchString(key) {
		return "", errors.New("key " + strconv.Quote(key) + ": use 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit")
	}
	return key, nil
}
