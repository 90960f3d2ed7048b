package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
)

// The first thing a user does: start the dev agent and run the example.
func TestDevAgentRunsHello(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	r := cli(t, s, "job", "run", "-file", helloFile(t), "hello")
	if r.code != 0 || !strings.Contains(r.stdout, "Hello from outpost") {
		t.Fatalf("want exit 0 and the greeting on stdout; got %v", r)
	}
	id := queuedID(t, r)

	j := statusJSON(t, s, id)
	if j.Status != rpc.JobSucceeded || j.ExitCode != 0 || j.FinishedAt == nil {
		t.Errorf("job status -json: status %q, exit code %d, finished %v; want succeeded, 0, set", j.Status, j.ExitCode, j.FinishedAt)
	}

	logs := cliOK(t, s, "job", "logs", id)
	for _, want := range []string{"Hello from outpost, workspace default", "running in "} {
		if !strings.Contains(logs.stdout, want) {
			t.Errorf("job logs: stdout lacks %q: %v", want, logs)
		}
	}

	list := cliOK(t, s, "job", "list", "-json", "-status", "succeeded")
	if !strings.Contains(list.stdout, id) {
		t.Errorf("job list -status succeeded does not list %s: %v", id, list)
	}
}

// A failing step's exit code is the CLI's exit code and the job's reason.
func TestFailingStep(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	r := cli(t, s, "job", "run", "-file", helloFile(t), "fail")
	if r.code != 3 {
		t.Fatalf("want exit code 3 (the step's); got %v", r)
	}
	if !strings.Contains(r.stderr, "about to fail") {
		t.Errorf("the step's stderr is not on the CLI's stderr: %v", r)
	}
	j := statusJSON(t, s, queuedID(t, r))
	if j.Status != rpc.JobFailed || j.ExitCode != 3 || !strings.Contains(j.StatusReason, "exited with code 3") {
		t.Errorf("status %q, exit code %d, reason %q; want failed, 3, a reason saying `exited with code 3`", j.Status, j.ExitCode, j.StatusReason)
	}
}

// A job over its timeout is failed, and its process is killed rather than
// waited for.
func TestTimeoutKillsStep(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})

	r := cli(t, s, "job", "run", "-file", helloFile(t), "sleepy")
	if r.code == 0 {
		t.Fatalf("a timed-out job must not exit 0: %v", r)
	}
	j := statusJSON(t, s, queuedID(t, r))
	if j.Status != rpc.JobFailed || !strings.Contains(j.StatusReason, "timed out") {
		t.Fatalf("status %q, reason %q; want failed, timed out", j.Status, j.StatusReason)
	}
	if j.StartedAt == nil || j.FinishedAt == nil {
		t.Fatalf("timed-out job has no start or finish time: %v", j)
	}
	// `sleep 30` cannot end by itself in under 30s, so a shorter run proves
	// the kill. This bounds nothing about speed: the timeout is 2s.
	if d := j.FinishedAt.AsTime().Sub(j.StartedAt.AsTime()); d >= 30*time.Second {
		t.Errorf("job ran %v: the sleep was waited for, not killed", d)
	}
	testcluster.WaitFor(t, 10*time.Second, func() (bool, string) {
		for _, p := range s.Spawned() {
			if strings.HasPrefix(p.Cmdline, "sleep 30") {
				return false, "the timed-out step is still running: " + p.String()
			}
		}
		return true, ""
	})
}

// Canceling a running job stops it and everything its step started.
func TestCancelRunningJob(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	dir := t.TempDir()
	shellPid, sleepPid := filepath.Join(dir, "shell.pid"), filepath.Join(dir, "sleep.pid")
	// The job runs in a working directory of its own, so the pid files
	// have absolute paths. `wait` keeps the shell alive alongside the sleep:
	// both must go.
	project := writeFile(t, "outpost.hcl", `project = "cancel"

job "long" {
  step "wait" {
    script = "echo $$ > `+shellPid+`; sleep 300 & echo $! > `+sleepPid+`; echo started; wait"
  }
}
`)
	id := runDetached(t, s, "-file", project, "long")

	waitStatus(t, s, id, rpc.JobRunning)
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		text := logText(logChunks(t, s, id))
		return strings.Contains(text, "stdout: started"), "first log line not visible yet; log:\n" + text
	})
	pids := map[string]int{"shell": readPid(t, shellPid), "sleep": readPid(t, sleepPid)}
	for what, pid := range pids {
		if !testcluster.PidAlive(pid) {
			t.Fatalf("the job's %s (pid %d) is not running before the cancel", what, pid)
		}
	}

	r := cliOK(t, s, "job", "cancel", id)
	if !strings.Contains(r.stdout, id) {
		t.Errorf("job cancel does not name the job: %v", r)
	}
	j := waitStatus(t, s, id, rpc.JobCanceled)
	if j.FinishedAt == nil {
		t.Errorf("canceled job has no finish time")
	}
	testcluster.WaitFor(t, 10*time.Second, func() (bool, string) {
		for what, pid := range pids {
			if testcluster.PidAlive(pid) {
				return false, "the job's " + what + " (pid " + strconv.Itoa(pid) + ") survived the cancel"
			}
		}
		return true, ""
	})
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// `job logs -f` prints lines while the job runs and returns when it ends.
func TestLogsFollow(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	gate := filepath.Join(t.TempDir(), "go-on")
	// The job prints one line, then waits for the test's signal (a file),
	// so "while it runs" is a fact, not a matter of timing. The loop is
	// bounded so a broken test cannot leave it waiting for ever.
	project := writeFile(t, "outpost.hcl", `project = "follow"

job "chatty" {
  step "talk" {
    script = "echo first; i=0; while [ ! -f `+gate+` ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; echo second"
  }
}
`)
	id := runDetached(t, s, "-file", project, "chatty")

	follow := testcluster.StartProcess(t, testcluster.ProcessOptions{
		Name: "logs-follow",
		Args: []string{"job", "logs", "-f", id},
		Env:  s.Env(),
	})
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		return lineIndex(follow.Logs(), "first") >= 0, "job logs -f has not printed the first line:\n" + follow.Tail(20)
	})
	if follow.Exited() {
		t.Fatalf("job logs -f returned while the job still runs (%s):\n%s", follow.ExitState(), follow.Logs())
	}
	if j, err := getJob(t.Context(), s, id); err != nil || rpc.JobTerminal(j.Status) {
		t.Fatalf("the job should be waiting for the gate: %v %v", j, err)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := follow.Wait(jobTimeout); err != nil {
		t.Fatalf("job logs -f did not return after the job ended: %v\n%s", err, follow.Logs())
	}
	out := follow.Logs()
	if follow.ExitCode() != 0 {
		t.Errorf("job logs -f: %s\n%s", follow.ExitState(), out)
	}
	if first, second := lineIndex(out, "first"), lineIndex(out, "second"); first < 0 || second < first {
		t.Errorf("job logs -f output lacks the second line after the first:\n%s", out)
	}
	if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded {
		t.Errorf("job is %s (%s), want succeeded", j.Status, j.StatusReason)
	}
}

// lineIndex returns where line appears in out as a whole line, or -1. Whole
// lines only: the step's header line quotes the script, words and all.
func lineIndex(out, line string) int {
	return strings.Index("\n"+out, "\n"+line+"\n")
}

// A retried job's log holds every attempt; `job logs -f`, `job logs` and
// `job run` mark where each attempt after the first begins, so the second
// run does not read as the first one going on.
func TestLogsMarkAttempts(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{})
	project := writeFile(t, "outpost.hcl", `project = "again"

job "flaky" {
  retry {
    attempts = 1
  }
  step "try" {
    script = "if [ \"$OUTPOST_ATTEMPT\" = 1 ]; then echo first-try; exit 1; fi; echo second-try"
  }
}
`)
	id := runDetached(t, s, "-file", project, "flaky")
	follow := testcluster.StartProcess(t, testcluster.ProcessOptions{
		Name: "logs-follow",
		Args: []string{"job", "logs", "-f", id},
		Env:  s.Env(),
	})
	if err := follow.Wait(jobTimeout); err != nil {
		t.Fatalf("job logs -f did not return: %v\n%s", err, follow.Logs())
	}
	if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded || j.Attempt != 2 {
		t.Fatalf("job is %s (%s) at attempt %d; want succeeded at attempt 2", j.Status, j.StatusReason, j.Attempt)
	}
	checkOrder := func(what, out string) {
		t.Helper()
		first, mark, second := lineIndex(out, "first-try"), lineIndex(out, "==> attempt 2"), lineIndex(out, "second-try")
		if first < 0 || mark < first || second < mark || strings.Contains(out, "==> attempt 1") {
			t.Errorf("%s: want first-try, then a line \"==> attempt 2\", then second-try (and no marker before the first attempt):\n%s", what, out)
		}
	}
	checkOrder("job logs -f", follow.Logs())

	// `job logs` prints the marker on stderr, with outpost's own lines.
	r := cliOK(t, s, "job", "logs", id)
	if lineIndex(r.stderr, "==> attempt 2") < 0 || lineIndex(r.stdout, "first-try") < 0 || lineIndex(r.stdout, "second-try") < 0 {
		t.Errorf("job logs: want both attempts' output and the marker on stderr: %v", r)
	}

	run := testcluster.StartProcess(t, testcluster.ProcessOptions{
		Name: "job-run",
		Args: []string{"job", "run", "-file", project, "flaky"},
		Env:  s.Env(),
	})
	if err := run.Wait(jobTimeout); err != nil {
		t.Fatalf("job run did not return: %v\n%s", err, run.Logs())
	}
	checkOrder("job run", run.Logs())
}
