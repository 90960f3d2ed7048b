package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Targeting tests (issue 5): jobs run only on runners their profile
// targets, on_demand jobs are isolated from each other and from the runner,
// and a job nothing can run says so.

// Jobs pick their profile through ${workspace} or a variable; each runs
// once, and only on a runner whose labels its profile asks for.
func TestLabelIsolation(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "labels"})
	rec := recordDir(t)
	tok := newToken(t, s)
	prod := startAdopted(t, s, testcluster.RunnerOptions{Name: "prod", Token: tok, Capacity: 2, Labels: map[string]string{"env": "prod"}})
	dev := startAdopted(t, s, testcluster.RunnerOptions{Name: "dev", Token: tok, Capacity: 2, Labels: map[string]string{"env": "dev"}})
	gpu := startAdopted(t, s, testcluster.RunnerOptions{Name: "gpu", Token: tok, Capacity: 2, Labels: map[string]string{"env": "dev", "gpu": "yes"}})
	profiles := writeFile(t, "profiles.hcl", `runner_profile "prod" {
  target_labels = { env = "prod" }
}

runner_profile "dev" {
  target_labels = { env = "dev" }
}

runner_profile "gpu" {
  target_labels = { gpu = "yes" }
}
`)
	cliOK(t, s, "runner", "profile", "set", "-file", profiles)
	// Where each profile may run.
	allowed := map[string]map[string]bool{
		"prod": {prod.ID(): true},
		"dev":  {dev.ID(): true, gpu.ID(): true},
		"gpu":  {gpu.ID(): true},
	}
	project := writeFile(t, "outpost.hcl", `project = "targets"

variable "target" {
  default = "prod"
}

runner {
  profile = "${workspace}"
}

job "by-workspace" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
    EOT
  }
}

job "by-variable" {
  runner {
    profile = "${var.target}"
  }
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
    EOT
  }
}
`)
	names := []string{"prod", "dev", "gpu"}
	want := map[string]string{} // job id -> profile
	var ids []string
	for i := range 30 {
		p := names[i%3]
		var id string
		if i%2 == 0 {
			id = runDetached(t, s, "-file", project, "-workspace", p, "by-workspace")
		} else {
			id = runDetached(t, s, "-file", project, "-var", "target="+p, "by-variable")
		}
		want[id] = p
		ids = append(ids, id)
	}
	for _, id := range ids {
		j := waitFinished(t, s, id)
		if j.Status != rpc.JobSucceeded || j.Profile != want[id] || !allowed[want[id]][j.RunnerId] {
			t.Errorf("job %s (profile %q, want %q) is %s (%s) on %q, which profile %s does not target",
				id, j.Profile, want[id], j.Status, j.StatusReason, j.RunnerId, want[id])
		}
	}
	recs := readRecords(t, rec)
	perRunner := map[string]int{}
	for _, id := range ids {
		ran := findRecords(recs, "ran", id, 0, "")
		if len(ran) != 1 {
			t.Errorf("job %s (profile %s) ran %d times by the runners' records, want once: %v", id, want[id], len(ran), ran)
			continue
		}
		if !allowed[want[id]][ran[0].runner] {
			t.Errorf("job %s with profile %s ran on %s, which the profile does not target", id, want[id], ran[0].runner)
		}
		perRunner[ran[0].runner]++
	}
	if len(recs) != len(ids) {
		t.Errorf("the runners recorded %d runs for %d jobs: %v", len(recs), len(ids), recs)
	}
	t.Logf("observation: jobs per runner: prod %d, dev %d, gpu %d", perRunner[prod.ID()], perRunner[dev.ID()], perRunner[gpu.ID()])
}

// on_demand jobs run in a private directory, each under a user id of its
// own, with a clean environment: a job can see neither another job's
// directory nor the runner's environment, and its directory is gone once
// it ends.
func TestOnDemandIsolation(t *testing.T) {
	e2e(t)
	if os.Geteuid() != 0 {
		t.Skip("on_demand jobs switch users only when the runner runs as root")
	}
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "sandbox"})
	rec := recordDir(t)
	release := filepath.Join(rec, "release-a")
	aDirFile := filepath.Join(rec, "a-dir")
	// The runner makes /tmp/outpost-on-demand-<id> and leaves it behind.
	var root string
	t.Cleanup(func() {
		if root != "" {
			os.RemoveAll(root)
		}
	})
	r := startAdopted(t, s, testcluster.RunnerOptions{
		Name: "sandboxer", Capacity: 2, Labels: map[string]string{"sandbox": "yes"},
		Env:  []string{"SECRET_RUNNER_VAR=runner-only-value"},
		Path: publicBinary(t),
	})
	root = filepath.Join(os.TempDir(), "outpost-on-demand-"+r.ID())
	profiles := writeFile(t, "profiles.hcl", fmt.Sprintf(`runner_profile "sandbox" {
  target_runner_id = %q
  mode             = "on_demand"

  limits {
    processes = 256
  }
}
`, r.ID()))
	cliOK(t, s, "runner", "profile", "set", "-file", profiles)
	project := writeFile(t, "outpost.hcl", `project = "sandbox"

runner {
  profile = "sandbox"
}

job "a" {
  step "s" {
    script = <<-EOT
      echo "pwd=$PWD"
      echo "uid=$(id -u)"
      echo private-data > mine.txt
      echo "$PWD" > `+aDirFile+`.tmp && mv `+aDirFile+`.tmp `+aDirFile+`
      # Bounded, and over once the test's directory is gone: the harness
      # cannot find on_demand steps (their environment is clean) to kill them.
      i=0; while [ -d `+rec+` ] && [ ! -f `+release+` ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
      echo "a-done"
    EOT
  }
}

job "b" {
  step "s" {
    script = <<-EOT
      a=$(cat `+aDirFile+`)
      echo "pwd=$PWD"
      echo "uid=$(id -u)"
      echo "home=$HOME"
      echo "parent-listing-begin"
      ls -a "$(dirname "$a")"; echo "parent-exit=$?"
      echo "a-listing-begin"
      ls -a "$a"; echo "a-exit=$?"
      cat "$a/mine.txt"; echo "cat-exit=$?"
      echo "env-begin"
      env
      echo "env-end"
      echo "proc-begin"
      for p in /proc/[0-9]*; do readlink "$p/cwd" 2>/dev/null; done | grep outpost-on-demand | sort -u
      echo "proc-end"
    EOT
  }
}
`)
	idA := runDetached(t, s, "-file", project, "a")
	var aDir string
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		b, err := os.ReadFile(aDirFile)
		aDir = strings.TrimSpace(string(b))
		if err == nil && aDir != "" {
			return true, ""
		}
		if j, jerr := getJob(t.Context(), s, idA); jerr == nil && rpc.JobTerminal(j.Status) {
			t.Fatalf("job a ended (%s: %s) before writing its directory; log:\n%s", j.Status, j.StatusReason, logText(logChunks(t, s, idA)))
		}
		return false, fmt.Sprintf("job a has not written its directory yet (%v)", err)
	})
	// Seen from root, A's directory is real and holds its file: B's
	// failure to see it below proves isolation, not a wrong path.
	if b, err := os.ReadFile(filepath.Join(aDir, "mine.txt")); err != nil || !strings.Contains(string(b), "private-data") {
		t.Fatalf("job a's file in %s: %q, %v", aDir, b, err)
	}
	if filepath.Dir(aDir) != root {
		t.Errorf("job a ran in %s, want a directory under %s", aDir, root)
	}

	idB := runDetached(t, s, "-file", project, "b")
	jb := waitFinished(t, s, idB)
	logB := logText(logChunks(t, s, idB))
	if jb.Status != rpc.JobSucceeded {
		t.Fatalf("job b is %s (%s); log:\n%s", jb.Status, jb.StatusReason, logB)
	}
	lines := stdoutLines(logB)
	between := func(from, to string) []string {
		i, j := indexOf(lines, from), -1
		for k := i + 1; i >= 0 && k < len(lines); k++ {
			if strings.HasPrefix(lines[k], to) {
				j = k
				break
			}
		}
		if i < 0 || j < 0 {
			t.Fatalf("job b's log lacks %q ... %q:\n%s", from, to, logB)
		}
		return lines[i+1 : j]
	}
	if got := between("parent-listing-begin", "parent-exit="); len(got) != 0 || hasLine(lines, "parent-exit=0") {
		t.Errorf("job b listed the on_demand parent directory %s: %q", root, got)
	}
	if got := between("a-listing-begin", "a-exit="); len(got) != 0 || hasLine(lines, "a-exit=0") {
		t.Errorf("job b listed job a's directory %s: %q", aDir, got)
	}
	if strings.Contains(logB, "private-data") || hasLine(lines, "cat-exit=0") {
		t.Errorf("job b read job a's file %s/mine.txt", aDir)
	}
	// Nor may it find A's directory on its own, through the working
	// directory of A's processes.
	for _, d := range between("proc-begin", "proc-end") {
		if d == aDir {
			t.Errorf("job b found job a's directory %s as the working directory of one of a's processes (/proc/PID/cwd): both jobs run as the same user", aDir)
		}
	}
	env := between("env-begin", "env-end")
	for _, kv := range env {
		if strings.HasPrefix(kv, "SECRET_RUNNER_VAR=") || strings.Contains(kv, "runner-only-value") || strings.HasPrefix(kv, "OUTPOST_TESTCLUSTER_TAG=") {
			t.Errorf("job b's environment has the runner's variable %q", kv)
		}
	}
	uidB := valueOf(lines, "uid=")
	if uidB == "" || uidB == "0" {
		t.Errorf("job b runs as uid %q; want an unprivileged user of its own; log:\n%s", uidB, logB)
	}
	pwdB := valueOf(lines, "pwd=")
	if pwdB == "" || pwdB == aDir || filepath.Dir(pwdB) != root {
		t.Errorf("job b ran in %q; want a directory of its own under %s, not job a's %s", pwdB, root, aDir)
	}
	if home := valueOf(lines, "home="); home != pwdB {
		t.Errorf("job b's HOME is %q, want its own directory %q", home, pwdB)
	}
	if _, err := os.Stat(pwdB); !os.IsNotExist(err) {
		t.Errorf("job b's directory %s outlived the job: %v", pwdB, err)
	}

	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ja := waitFinished(t, s, idA)
	logA := logText(logChunks(t, s, idA))
	if ja.Status != rpc.JobSucceeded || !strings.Contains(logA, "stdout: a-done") {
		t.Errorf("job a is %s (%s); log:\n%s", ja.Status, ja.StatusReason, logA)
	}
	if got := valueOf(stdoutLines(logA), "pwd="); got != aDir {
		t.Errorf("job a printed pwd %q, but wrote %q", got, aDir)
	}
	if uidA := valueOf(stdoutLines(logA), "uid="); uidA == "" || uidA == "0" || uidA == uidB {
		t.Errorf("job a ran as uid %q and job b as %q: each on_demand job needs a user of its own", uidA, uidB)
	}
	if _, err := os.Stat(aDir); !os.IsNotExist(err) {
		t.Errorf("job a's directory %s outlived the job: %v", aDir, err)
	}
}

// publicBinary returns a copy of the outpost binary that any user may run.
// An on_demand job with limits starts through the runner's own binary
// (executor-launch) after dropping to nobody, and the harness builds the
// binary in a directory only root may enter.
func publicBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "outpost-e2e-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(testcluster.Binary(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "outpost")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// stdoutLines returns the stdout lines of a logText.
func stdoutLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "stdout: "); ok {
			out = append(out, v)
		}
	}
	return out
}

func indexOf(lines []string, line string) int {
	for i, l := range lines {
		if l == line {
			return i
		}
	}
	return -1
}

func hasLine(lines []string, line string) bool { return indexOf(lines, line) >= 0 }

// valueOf returns the rest of the first line that starts with prefix.
func valueOf(lines []string, prefix string) string {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}

// A job no runner can take says why, in `job status` and `job list`.
func TestPendingReasonVisible(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "reasons"})
	startAdopted(t, s, testcluster.RunnerOptions{Name: "dev-only", Labels: map[string]string{"env": "dev"}})
	cliOK(t, s, "runner", "profile", "set", "-name", "nowhere", "-target-label", "env=nowhere")
	project := writeFile(t, "outpost.hcl", `project = "reasons"

job "stranded" {
  runner {
    profile = "nowhere"
  }
  step "s" {
    command = ["echo", "never"]
  }
}
`)
	const want = "no adopted runner matches labels {env=nowhere}"
	id := runDetached(t, s, "-file", project, "stranded")
	waitJob(t, s, id, "pending: "+want, func(j *pb.Job) bool {
		return j.Status == rpc.JobPending && strings.Contains(j.StatusReason, want)
	})
	st := cliOK(t, s, "job", "status", id)
	if !strings.Contains(st.stdout, want) || !strings.Contains(st.stdout, "pending") {
		t.Errorf("job status does not show the job pending with %q: %v", want, st)
	}
	list := cliOK(t, s, "job", "list")
	var row string
	for _, l := range strings.Split(list.stdout, "\n") {
		if strings.HasPrefix(l, id) {
			row = l
		}
	}
	if !strings.Contains(row, "pending") || !strings.Contains(row, want) {
		t.Errorf("job list row of %s is %q; want it pending with %q\n%v", id, row, want, list)
	}
}
