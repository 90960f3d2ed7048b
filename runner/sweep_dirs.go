package runner

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// A runner that is killed (SIGKILL, the OOM killer, a power cut) leaves the
// working directories of the jobs it ran behind: their cleanup runs when
// an attempt ends, and this life's attempts ended with the process. A new
// life of the runner on the same data dir removes them before it takes any
// work. It may: the outbox's lock is held, so no other runner uses this
// data dir, and the attempts that ran in those directories are over (the
// servers hand back every attempt of an earlier life).

// sweepJobDirs removes the job directories under dir, and only those: a
// directory named like one (<job id>-<attempt>, see prepare), so that a
// data dir pointed at a directory with a work/ of someone else's loses
// nothing else. It returns how many it removed.
func sweepJobDirs(dir string, logger hclog.Logger) int {
	return sweep(dir, isJobDir, logger)
}

// sweepOnDemandDirs removes the private directories on_demand jobs of this
// runner left under root (os.TempDir()/outpost-on-demand-<runner id>).
func sweepOnDemandDirs(root string, logger hclog.Logger) int {
	return sweep(root, func(name string) bool { return strings.HasPrefix(name, "job-") }, logger)
}

func sweep(dir string, match func(string) bool, logger hclog.Logger) int {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			logger.Warn("cannot list job directories left by an earlier run", "dir", dir, "error", err)
		}
		return 0
	}
	n := 0
	for _, e := range entries {
		// Type is from Lstat: a symlink is not a directory, and is left.
		if !e.IsDir() || !match(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := removeAll(path); err != nil {
			logger.Warn("cannot remove a job directory left by an earlier run", "dir", path, "error", err)
			continue
		}
		n++
	}
	return n
}

// isJobDir reports whether name is a static job's directory: a job id
// ("j-" and hex), "-", the attempt.
func isJobDir(name string) bool {
	id, attempt, ok := cutLast(name, "-")
	if !ok || attempt == "" || !strings.HasPrefix(id, "j-") || len(id) < 3 {
		return false
	}
	for _, c := range attempt {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, c := range id[2:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// removeAll removes path like os.RemoveAll, and when that fails (a job
// may take the write bit off its own directories, which stops a runner
// that is not root), makes every directory under it writable and tries
// again. Symlinks are never followed: neither does os.RemoveAll, nor the
// walk.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, _ error) error {
		// A directory that could not be read is handed here too, before
		// its contents; once writable it is walked on the next try.
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
