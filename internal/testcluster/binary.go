package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BinaryEnv names the environment variable that points the harness at a
// prebuilt outpost binary instead of building one (for CI, or to test a
// release build).
const BinaryEnv = "OUTPOST_BINARY"

// modulePath is the package the binary is built from.
const modulePath = "github.com/outpost-run/outpost"

var build struct {
	once sync.Once
	dir  string // temporary directory holding the binary; removed by Main
	path string
	err  error
}

// Binary returns the path of an outpost binary: $OUTPOST_BINARY when set,
// else one built from this checkout, once per test process. A build failure
// fails every test that asks, each with the compiler's output.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatalf("testcluster: %s=%q: %v", BinaryEnv, p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("testcluster: %s=%q: %v", BinaryEnv, p, err)
		}
		return abs
	}
	build.once.Do(func() {
		root, err := findRepoRoot()
		if err != nil {
			build.err = err
			return
		}
		// Not t.TempDir: the binary outlives the test that first asked for
		// it and is shared by every test in the process.
		dir, err := os.MkdirTemp("", "outpost-testcluster-")
		if err != nil {
			build.err = err
			return
		}
		build.dir = dir
		// on_demand jobs run under their own user ids and start through
		// this binary (executor-launch): it must be reachable by anyone.
		if err := os.Chmod(dir, 0o755); err != nil {
			build.err = err
			return
		}
		out := filepath.Join(dir, "outpost")
		cmd := exec.Command(goTool(), "build", "-o", out, modulePath)
		cmd.Dir = root
		// The binary `make build` ships: static, as users run it.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build %s: %v\n%s", modulePath, err, b)
			return
		}
		build.path = out
	})
	if build.err != nil {
		t.Fatalf("testcluster: building outpost: %v", build.err)
	}
	return build.path
}

// goTool finds the go command: the one on PATH, else the one in GOROOT.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// Main runs a package's tests and then removes the binary Binary built, so
// repeated runs do not fill the temporary directory. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testcluster.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	if pkiVal != nil {
		os.RemoveAll(pkiVal.pki.Dir)
	}
	os.Exit(code)
}

// RepoRoot returns the directory holding the module's go.mod, found by
// walking up from the working directory (a test's is its package directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	return root
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
