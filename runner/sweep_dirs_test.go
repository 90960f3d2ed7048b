package runner

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// The sweep removes the job directories an earlier run left, whatever a
// job did to their permissions, and nothing else: not files, not other
// directories, not what a symlink points at.
func TestSweepJobDirs(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	keep := filepath.Join(outside, "precious")
	must(os.WriteFile(keep, []byte("x"), 0o644))

	job := filepath.Join(work, "j-0123456789abcdef-1")
	locked := filepath.Join(job, "deep", "locked")
	must(os.MkdirAll(locked, 0o700))
	must(os.WriteFile(filepath.Join(locked, "f"), []byte("x"), 0o600))
	// A job that took the write and search bits off its directories.
	must(os.Chmod(locked, 0o500))
	must(os.Chmod(filepath.Join(job, "deep"), 0o000))
	must(os.MkdirAll(filepath.Join(work, "j-ab-12"), 0o700))
	must(os.Symlink(outside, filepath.Join(work, "j-0123456789abcdef-2"))) // not a directory of ours
	must(os.MkdirAll(filepath.Join(work, "notes"), 0o700))
	must(os.MkdirAll(filepath.Join(work, "j-NOTHEX-1"), 0o700))
	must(os.MkdirAll(filepath.Join(work, "j-0123-x"), 0o700))
	must(os.WriteFile(filepath.Join(work, "j-0123-3"), []byte("a file"), 0o600))

	if n := sweepJobDirs(work, hclog.NewNullLogger()); n != 2 {
		t.Errorf("removed %d directories, want 2", n)
	}
	entries, err := os.ReadDir(work)
	must(err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if want := []string{"j-0123-3", "j-0123-x", "j-0123456789abcdef-2", "j-NOTHEX-1", "notes"}; !slices.Equal(left, want) {
		t.Errorf("left %q, want %q", left, want)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the symlink's target lost its file: %v", err)
	}
	// Nothing to do, and no directory at all, are both fine.
	if n := sweepJobDirs(filepath.Join(work, "absent"), hclog.NewNullLogger()); n != 0 {
		t.Errorf("absent dir: removed %d", n)
	}
}

func TestIsJobDir(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"j-0123456789abcdef-1": true, "j-a-10": true,
		"j-0123456789abcdef": false, "j--1": false, "j-a-": false, "x-a-1": false, "j-A-1": false, "j-a-1x": false, "notes": false,
	} {
		if got := isJobDir(name); got != want {
			t.Errorf("isJobDir(%q) = %v, want %v", name, got, want)
		}
	}
}
