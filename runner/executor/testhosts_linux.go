package executor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SweepDeadTestHosts is for tests that make Hosts named
// prefix<pid>-<anything>: it removes the cgroups of such Hosts whose test
// process has died (crashed, or killed by a timeout) without closing them,
// as the next life of a runner would, so that test runs on a shared
// machine do not pile cgroups up. It looks at this process's own cgroups
// only, where its Hosts would put theirs.
func SweepDeadTestHosts(prefix string) {
	mounts, err := readCgroupMounts()
	if err != nil {
		return
	}
	own, err := procCgroups()
	if err != nil {
		return
	}
	names := map[string]bool{}
	for _, m := range mounts {
		var dir string
		if m.v2 {
			dir = cgroupDir(m, own[""])
		} else if len(m.controllers) > 0 {
			dir = cgroupDir(m, own[m.controllers[0]])
		}
		if dir == "" {
			continue
		}
		for _, d := range childDirs(dir) {
			name, ok := strings.CutPrefix(filepath.Base(d), "outpost-"+prefix)
			if !ok {
				continue
			}
			// The directory is the host's name and its process's pid.
			if i := strings.LastIndexByte(name, '-'); i > 0 {
				name = name[:i]
			}
			pid, _, ok := strings.Cut(name, "-")
			if n, err := strconv.Atoi(pid); ok && err == nil && n != os.Getpid() {
				if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
					names[prefix+name] = true
				}
			}
		}
	}
	for name := range names {
		if h, err := NewHost(HostOptions{Name: name}); err == nil {
			_ = h.Close()
		}
	}
}
