package runner

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
)

// ModeOnDemand runs each job in a fresh, isolated executor.
const ModeOnDemand = "on_demand"

// When the runner is root and the profile names no user, each on_demand job
// runs as a user id of its own, from a range no account uses: two jobs
// then cannot read each other's files or look into each other's processes
// (/proc/PID/cwd), which a shared account such as nobody would allow.
const (
	jobUIDBase  = 1_000_000_000
	jobUIDRange = 1 << 20
)

// onDemandRoot is the parent of this runner's on_demand job directories.
func (r *Runner) onDemandRoot() string {
	return filepath.Join(os.TempDir(), "outpost-on-demand-"+r.cfg.ID)
}

// onDemand prepares a fresh executor for one job: a private working
// directory with an unguessable name under a parent other users can pass
// through but not list, a clean environment (only what the profile and
// the job set, plus PATH, HOME and TMPDIR), its own session, resource
// limits (memory and cpus for the whole job through its cgroup when the
// spec has an executor.Host, the others as rlimits), and, when the runner
// runs as root, an unprivileged user.
func (r *Runner) onDemand(job *pb.Job, spec *executor.Spec) (cleanup func(), err error) {
	// Under the system temp dir, not the data dir: every directory above a
	// job's must be passable by the job's user, and a data dir often sits
	// under a private parent.
	root := r.onDemandRoot()
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("on_demand: %w", err)
	}
	if err := os.Chmod(root, 0o711); err != nil {
		return nil, fmt.Errorf("on_demand: %w", err)
	}
	dir, err := os.MkdirTemp(root, "job-")
	if err != nil {
		return nil, fmt.Errorf("on_demand: working directory: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }

	iso := &executor.Isolation{Launcher: r.cfg.Launcher}
	if l := job.Limits; l != nil {
		// memory and cpus are the whole job's, in its cgroup (see
		// executor.Host); the rest are rlimits of each process.
		iso.Limits = executor.Limits{MemoryBytes: l.MemoryBytes, CPUs: l.Cpus, Processes: l.Processes,
			OpenFiles: l.OpenFiles, CPUSeconds: l.CpuSeconds, FileSize: l.FileSizeBytes}
	}
	name := job.User
	if os.Geteuid() == 0 {
		var uid, gid uint64
		if name != "" {
			u, err := user.Lookup(name)
			if err != nil {
				cleanup()
				return nil, fmt.Errorf("on_demand: user %q: %w", name, err)
			}
			uid, _ = strconv.ParseUint(u.Uid, 10, 32)
			gid, _ = strconv.ParseUint(u.Gid, 10, 32)
		} else {
			uid = jobUIDBase + uint64(r.jobUIDs.Add(1))%jobUIDRange
			gid = uid
			name = "job-" + strconv.FormatUint(uid, 10)
		}
		iso.SetUser, iso.UID, iso.GID = true, uint32(uid), uint32(gid)
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			cleanup()
			return nil, fmt.Errorf("on_demand: %w", err)
		}
	} else if name != "" {
		if cur, err := user.Current(); err != nil || cur.Username != name {
			cleanup()
			return nil, fmt.Errorf("on_demand: the profile asks for user %q, which needs the runner to run as root", name)
		}
	}
	if name == "" {
		if cur, err := user.Current(); err == nil {
			name = cur.Username
		}
	}
	spec.Dir = dir
	spec.BaseEnv = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + dir,
		"TMPDIR=" + dir,
		"USER=" + name,
		"LOGNAME=" + name,
	}
	spec.Isolation = iso
	return cleanup, nil
}
