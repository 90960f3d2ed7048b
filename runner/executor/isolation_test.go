package executor

import (
	"context"
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as the launcher: Isolation re-executes it with
// this variable set, as the runner re-executes outpost.
const launcherEnv = "OUTPOST_EXECUTOR_TEST_LAUNCHER"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperFlag {
		os.Exit(helperMain(os.Args[2:]))
	}
	if os.Getenv(launcherEnv) == "1" {
		os.Exit(LaunchMain(os.Args[1:], os.Environ(), os.Stderr))
	}
	os.Exit(m.Run())
}

func runIsolated(t *testing.T, iso *Isolation, script string) (Result, []string) {
	t.Helper()
	// Not t.TempDir: its parent is private to root, and the step may run as
	// another user.
	dir, err := os.MkdirTemp("", "outpost-iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	var out []string
	res := Run(context.Background(), Spec{
		Steps:     []Step{{Name: "s", Script: script}},
		BaseEnv:   []string{"PATH=/usr/bin:/bin", launcherEnv + "=1"},
		Dir:       dir,
		Isolation: iso,
	}, func(l LogLine) {
		if l.Stream == Stdout {
			out = append(out, l.Text)
		}
	})
	return res, out
}

func TestIsolationLimits(t *testing.T) {
	iso := &Isolation{Limits: Limits{OpenFiles: 64, FileSize: 1 << 20}, Launcher: []string{os.Args[0]}}
	res, out := runIsolated(t, iso, "ulimit -n; ulimit -f")
	if res.Outcome != Succeeded {
		t.Fatalf("job %s: %s", res.Outcome, res.Reason)
	}
	// dash reports -f in 512-byte blocks: 1 MiB is 2048.
	if strings.Join(out, ",") != "64,2048" {
		t.Fatalf("limits seen by the step = %v, want [64 2048]", out)
	}
}

func TestIsolationOwnSession(t *testing.T) {
	res, out := runIsolated(t, &Isolation{}, "ps -o sid= -p $$; echo $$")
	if res.Outcome != Succeeded || len(out) != 2 {
		t.Fatalf("job %s (%s), output %v", res.Outcome, res.Reason, out)
	}
	if strings.TrimSpace(out[0]) != strings.TrimSpace(out[1]) {
		t.Fatalf("step's session %q is not its own (pid %q)", out[0], out[1])
	}
}

func TestIsolationUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody here")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	res, out := runIsolated(t, &Isolation{SetUser: true, UID: uint32(uid), GID: uint32(gid)}, "id -u")
	if res.Outcome != Succeeded || len(out) != 1 || out[0] != u.Uid {
		t.Fatalf("job %s (%s), id -u = %v, want %s", res.Outcome, res.Reason, out, u.Uid)
	}
}

func TestLimitsWithoutLauncherFail(t *testing.T) {
	res, _ := runIsolated(t, &Isolation{Limits: Limits{OpenFiles: 64}}, "true")
	if res.Outcome != Failed || !strings.Contains(res.Reason, "launcher") {
		t.Fatalf("got %s: %s; want a failure naming the missing launcher", res.Outcome, res.Reason)
	}
}
