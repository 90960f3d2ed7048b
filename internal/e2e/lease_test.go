package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// Lease tests (issue 12): a job runs on one runner at a time whatever the
// runner suffers, and no assignment is dropped or left waiting.

// lockedRecord is a shell prelude for a step: it takes the job's lock in
// dir for as long as any process of the step lives, and notes "overlap"
// if another execution of the same job holds it. The kernel drops a lock
// when its last holder dies, SIGKILL included, so a note means two
// executions of one job were alive at the same moment.
func lockedRecord(dir string) string {
	return `exec 9>>` + dir + `/lock-$OUTPOST_JOB_ID
      flock -n 9 || ` + recordCmd(dir, "overlap")
}

// A runner frozen while a job is assigned to it but not started never
// starts it after it thaws: the servers took the assignment back and gave
// it to another runner, and the frozen runner's start is refused.
func TestFrozenRunnerNeverStartsTakenBackAssignment(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "taken-back", "3s")
	rec := recordDir(t)
	labels := map[string]string{"pool": "takeback"}
	a := startAdopted(t, s, testcluster.RunnerOptions{Name: "takeback-a", Labels: labels, Capacity: 1})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-takeback", "-target-label", "pool=takeback")
	project := writeFile(t, "outpost.hcl", `project = "takeback"

runner {
  profile = "pool-takeback"
}

job "once" {
  step "work" {
    script = <<-EOT
      `+lockedRecord(rec)+`
      `+recordCmd(rec, "start")+`
      sleep 1
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
	a.Freeze()
	id := runDetached(t, s, "-file", project, "once")
	assigned := waitJob(t, s, id, "assigned to "+a.ID(), func(j *pb.Job) bool {
		return j.Status == rpc.JobAssigned && j.RunnerId == a.ID()
	})
	b := startAdopted(t, s, testcluster.RunnerOptions{Name: "takeback-b", Labels: labels, Capacity: 1})
	done := waitFinished(t, s, id)
	if done.Status != rpc.JobSucceeded || done.RunnerId != b.ID() {
		t.Fatalf("job ended %s (%s) on %q, want succeeded on %s", done.Status, done.StatusReason, done.RunnerId, b.ID())
	}
	a.Thaw()
	// The thawed runner reads the old assignment first thing; give it the
	// time to act on it, then check it did not run it.
	a.WaitListed(s, "adopted", "ready", runnerWait)
	probeRunner(t, s, a, rec)
	recs := readRecords(t, rec)
	if got := findRecords(recs, "start", id, 0, a.ID()); len(got) != 0 {
		t.Errorf("the thawed runner ran the job it had been assigned (lease %d) after it was taken back: %v", assigned.Lease, got)
	}
	if got := findRecords(recs, "overlap", id, 0, ""); len(got) != 0 {
		t.Errorf("two executions of the job overlapped: %v", got)
	}
	if got := findRecords(recs, "start", id, 0, ""); len(got) != 1 {
		t.Errorf("the job ran %d times, want once: %v", len(got), recs)
	}
}

// probeRunner runs a job only r may take and waits for it: r's stream has
// then delivered everything queued before it.
func probeRunner(t *testing.T, s *testcluster.Server, r *testcluster.Runner, rec string) {
	t.Helper()
	profile := "only-" + r.Name()
	cliOK(t, s, "runner", "profile", "set", "-name", profile, "-target-runner-id", r.ID())
	probe := writeFile(t, "probe.hcl", `project = "probe"

job "probe" {
  runner {
    profile = "`+profile+`"
  }
  step "s" {
    script = "`+strings.ReplaceAll(recordCmd(rec, "probe"), `"`, `\"`)+`"
  }
}
`)
	j := waitFinished(t, s, runDetached(t, s, "-file", probe, "probe"))
	if j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
		t.Fatalf("probe job on %s: %s (%s) on %q", r.Name(), j.Status, j.StatusReason, j.RunnerId)
	}
}

// A job handed back to the runner that already held it under an older
// lease starts under the new one: the re-assignment is not dropped, and
// the old attempt is over before the new one runs a step.
func TestJobReassignedToSameRunnerStarts(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "same-runner", "3s")
	rec := recordDir(t)
	a := startAdopted(t, s, testcluster.RunnerOptions{Name: "again", Labels: map[string]string{"pool": "again"}, Capacity: 1})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-again", "-target-label", "pool=again")
	project := writeFile(t, "outpost.hcl", `project = "again"

runner {
  profile = "pool-again"
}

job "again" {
  step "work" {
    script = <<-EOT
      `+lockedRecord(rec)+`
      `+recordCmd(rec, "start")+`
      sleep 1
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
	// Frozen with the job assigned: the leader takes the assignment back
	// when the runner goes silent, and, as this runner is the only one
	// that matches, gives it to the same runner again once it is back.
	a.Freeze()
	id := runDetached(t, s, "-file", project, "again")
	first := waitJob(t, s, id, "assigned to "+a.ID(), func(j *pb.Job) bool {
		return j.Status == rpc.JobAssigned && j.RunnerId == a.ID()
	})
	a.WaitListed(s, "adopted", "down", runnerWait)
	a.Thaw()
	done := waitFinished(t, s, id)
	if done.Status != rpc.JobSucceeded || done.RunnerId != a.ID() {
		t.Fatalf("job ended %s (%s) on %q, want succeeded on %s", done.Status, done.StatusReason, done.RunnerId, a.ID())
	}
	if done.Lease == first.Lease {
		t.Errorf("the job finished under its first lease %d; want a new assignment after the runner came back", first.Lease)
	}
	recs := readRecords(t, rec)
	if got := findRecords(recs, "start", id, 0, ""); len(got) != 1 {
		t.Errorf("the job ran %d times, want once: %v", len(got), recs)
	}
	if got := findRecords(recs, "overlap", id, 0, ""); len(got) != 0 {
		t.Errorf("two executions of the job overlapped: %v", got)
	}
}

// A runner told of a single server learns the others from it and keeps
// working when that server dies, also across its own restart.
func TestRunnerSurvivesItsOnlyServer(t *testing.T) {
	e2e(t)
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "only"})
	first := c.Servers[0]
	r := startAdopted(t, first, testcluster.RunnerOptions{Name: "only-runner", Servers: []string{first.Addr()}, Capacity: 2})
	// The runner keeps what servers told it in its data dir.
	learned := filepath.Join(r.Options().DataDir, "servers.json")
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		b, err := os.ReadFile(learned)
		if err != nil {
			return false, err.Error()
		}
		var saved struct{ Servers []string }
		if err := json.Unmarshal(b, &saved); err != nil {
			return false, err.Error()
		}
		for _, s := range c.Servers[1:] {
			if !slices.Contains(saved.Servers, s.Addr()) {
				return false, "servers.json lacks " + s.Addr() + ": " + string(b)
			}
		}
		return true, ""
	})
	first.Kill()
	var leader *testcluster.Server
	testcluster.WaitFor(t, 30*time.Second, func() (bool, string) {
		for _, s := range c.Servers[1:] {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, err := s.Status(ctx)
			cancel()
			if err == nil && st.IsLeader {
				leader = s
				return true, ""
			}
		}
		return false, "no leader among the servers left"
	})
	project := writeFile(t, "outpost.hcl", `project = "only"

job "hello" {
  step "s" {
    command = ["true"]
  }
}
`)
	for _, restart := range []bool{false, true} {
		if restart {
			r.Kill()
			r.Restart()
		}
		j := waitFinished(t, leader, runDetached(t, leader, "-file", project, "hello"))
		if j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
			t.Fatalf("restarted %v: job ended %s (%s) on %q, want succeeded on %s", restart, j.Status, j.StatusReason, j.RunnerId, r.ID())
		}
	}
}

// A step may print any bytes. Each hostile output below ends succeeded,
// `job logs` gives back the bytes as printed, and the JSON API renders
// them as valid text, with the raw bytes beside lines that are not UTF-8.
func TestHostileOutput(t *testing.T) {
	e2e(t)
	s := startDev(t, testcluster.ServerOptions{Name: "hostile"})
	dir := recordDir(t)
	cases := []struct {
		name   string
		script string // prints the output and saves it to $OUT
		// exact: `job logs` stdout must equal what was saved (plus a
		// final newline); otherwise the log is only checked to be read.
		exact bool
	}{
		{"invalid-utf8", `printf 'caf\351\n' | tee "$OUT"`, true},
		{"nul", `printf 'a\000b\n' | tee "$OUT"`, true},
		{"ansi", `printf '\033[31mred\033[0m \033]0;title\007\n' | tee "$OUT"`, true},
		// No carriage returns: the log reader strips "\r" before "\n".
		{"random", `head -c 200000 /dev/urandom | tr -d '\r' > "$OUT"; cat "$OUT"`, true},
		// Longer than the stored log's cap: the job still succeeds.
		{"long-line", `head -c 10000000 /dev/zero | tr '\000' x; echo`, false},
	}
	var b strings.Builder
	b.WriteString("project = \"hostile\"\n")
	for _, c := range cases {
		b.WriteString(`
job "` + c.name + `" {
  env = { OUT = "` + filepath.Join(dir, c.name) + `" }
  step "print" {
    script = <<-EOT
      ` + c.script + `
    EOT
  }
}
`)
	}
	project := writeFile(t, "outpost.hcl", b.String())
	jc := outpostv1connect.NewJobServiceClient(testcluster.HTTPClient(t), s.Addr(), connect.WithProtoJSON())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := runDetached(t, s, "-file", project, c.name)
			j := waitFinished(t, s, id)
			if j.Status != rpc.JobSucceeded {
				t.Fatalf("job %s ended %s (%s), want succeeded", id, j.Status, j.StatusReason)
			}
			out := cliOK(t, s, "job", "logs", id)
			if c.exact {
				want, err := os.ReadFile(filepath.Join(dir, c.name))
				if err != nil {
					t.Fatal(err)
				}
				if len(want) > 0 && want[len(want)-1] != '\n' {
					want = append(want, '\n')
				}
				if out.stdout != string(want) {
					t.Errorf("job logs printed %d bytes, want the %d the step printed (first difference at byte %d)", len(out.stdout), len(want), firstDiff(out.stdout, string(want)))
				}
			} else if !strings.Contains(out.stdout, strings.Repeat("x", 1000)) {
				t.Errorf("job logs lacks the step's output: %.200q", out.stdout)
			}
			// Through JSON: a line that is not valid UTF-8 would make the
			// server's encoder fail the whole answer.
			stream, err := jc.ReadLogs(context.Background(), connect.NewRequest(&pb.ReadLogsRequest{Id: id}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			raw := 0
			for stream.Receive() {
				for _, ch := range stream.Msg().Chunks {
					for _, l := range ch.Lines {
						if !utf8.ValidString(l.Text) {
							t.Errorf("JSON line text is not valid UTF-8: %q", l.Text)
						}
						if len(l.Data) > 0 {
							raw++
						}
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("ReadLogs as JSON: %v", err)
			}
			if c.name == "invalid-utf8" && raw == 0 {
				t.Errorf("JSON answer carries no raw bytes for the line that is not UTF-8")
			}
		})
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Every process a job starts ends with it: background processes, ones in
// a session of their own, and double-forked daemons are gone once the job
// has ended, been canceled, timed out, or lost its runner to SIGKILL.
func TestJobProcessesEndWithJob(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "leftovers", "3s")
	dir := recordDir(t)
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "leftovers-runner", Labels: map[string]string{"pool": "leftovers"}, Capacity: 4})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-leftovers", "-target-label", "pool=leftovers")
	// Each job writes the pids of what it leaves behind to a file of its own.
	spawn := `pids="` + dir + `/pids-$OUTPOST_JOB_ID"
      nohup sleep 1000 >/dev/null 2>&1 & echo $! >> "$pids"
      setsid sleep 1000 >/dev/null 2>&1 & echo $! >> "$pids"
      sh -c 'setsid sh -c "sleep 1000 & echo \$! >> $0; wait" "$0" &' "$pids"
      while [ "$(wc -l < "$pids")" -lt 3 ]; do sleep 0.05; done`
	project := writeFile(t, "outpost.hcl", `project = "leftovers"

runner {
  profile = "pool-leftovers"
}

job "ends" {
  step "spawn" {
    script = <<-EOT
      `+spawn+`
    EOT
  }
}

job "hangs" {
  timeout = "60s"
  step "spawn" {
    script = <<-EOT
      `+spawn+`
      sleep 1000
    EOT
  }
}

job "times-out" {
  timeout = "2s"
  step "spawn" {
    script = <<-EOT
      `+spawn+`
      sleep 1000
    EOT
  }
}
`)
	pidsOf := func(t *testing.T, id string) []int {
		t.Helper()
		var pids []int
		testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
			b, err := os.ReadFile(filepath.Join(dir, "pids-"+id))
			if err != nil {
				return false, err.Error()
			}
			pids = pids[:0]
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			return len(pids) >= 3, "waiting for three pids, have " + string(b)
		})
		return pids
	}
	gone := func(t *testing.T, how string, pids []int) {
		t.Helper()
		testcluster.WaitFor(t, 30*time.Second, func() (bool, string) {
			for _, p := range pids {
				if testcluster.PidAlive(p) {
					return false, fmt.Sprintf("after the job %s, pid %d (%s) still runs", how, p, procCmdline(p))
				}
			}
			return true, ""
		})
	}
	cases := []struct {
		name, job string
		end       func(t *testing.T, id string)
		want      string
	}{
		{"ended", "ends", func(*testing.T, string) {}, rpc.JobSucceeded},
		{"canceled", "hangs", func(t *testing.T, id string) { cliOK(t, s, "job", "cancel", id) }, rpc.JobCanceled},
		{"timed out", "times-out", func(*testing.T, string) {}, rpc.JobFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := runDetached(t, s, "-file", project, c.job)
			pids := pidsOf(t, id)
			c.end(t, id)
			if j := waitFinished(t, s, id); j.Status != c.want {
				t.Fatalf("job ended %s (%s), want %s", j.Status, j.StatusReason, c.want)
			}
			gone(t, c.name, pids)
		})
	}
	t.Run("runner killed", func(t *testing.T) {
		id := runDetached(t, s, "-file", project, "hangs")
		pids := pidsOf(t, id)
		// The runner alone dies; its jobs' processes and its watchdog,
		// in groups of their own, are left to fend for themselves.
		r.Crash()
		gone(t, "lost its runner", pids)
	})
}

func procCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
}
