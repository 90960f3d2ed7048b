package testcluster

import (
	"io/fs"
	"path/filepath"
)

// DirSize is the size of the files under dir (a server's Raft directory,
// say), for tests and benchmarks that watch how it grows.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
