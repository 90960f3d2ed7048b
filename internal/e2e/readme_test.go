package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
)

// TestReadmeSecureCluster runs README.md's secure-cluster block as a
// newcomer pastes it: three TLS servers with ACLs and encrypted gossip,
// the bootstrap, a runner adopted by a minted token, and a job. Only the
// build line is left out (the test has its binary) and /tmp/outpost-cluster
// is moved to a temporary directory, in the block and in copies of the
// example configs it starts the agents with.
func TestReadmeSecureCluster(t *testing.T) {
	e2e(t)
	root := testcluster.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := between(string(readme), "<!-- secure-cluster -->\n```sh\n", "```\n<!-- /secure-cluster -->")
	if block == "" {
		t.Fatal("README.md has no <!-- secure-cluster --> sh block")
	}
	// The example configs use fixed loopback ports; say so plainly if
	// something else (a developer's own tutorial cluster) holds them.
	for _, p := range []int{1801, 1802, 1803, 1811, 1812, 1813, 1821, 1822, 1823} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d of examples/cluster is taken (%v): is a tutorial cluster running? pkill -f examples/cluster/", p, err)
		}
		ln.Close()
	}

	work := t.TempDir()
	state := filepath.Join(work, "cluster")
	move := func(s string) string { return strings.ReplaceAll(s, "/tmp/outpost-cluster", state) }
	for _, dir := range []string{"examples/cluster", "examples/hello"} {
		if err := os.MkdirAll(filepath.Join(work, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.hcl"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(work, dir, filepath.Base(f)), []byte(move(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	bin := filepath.Join(work, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testcluster.Binary(t), filepath.Join(bin, "outpost")); err != nil {
		t.Fatal(err)
	}
	var script []string
	for _, line := range strings.Split(move(block), "\n") {
		if !strings.HasPrefix(line, "make build") {
			script = append(script, line)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail\n"+strings.Join(script, "\n"))
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + work}
	// Its own process group: the agents it leaves running in the
	// background are stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		time.Sleep(time.Second)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	if err != nil || !strings.Contains(string(out), "succeeded: all steps succeeded") {
		logs, _ := filepath.Glob(filepath.Join(state, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("---- %s ----\n%s", filepath.Base(l), tail(string(b), 30))
		}
		t.Fatalf("the README block: %v\n%s", err, out)
	}
}

// between returns the text of s between start and end, or "".
func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
