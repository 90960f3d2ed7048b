package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Runner tests (issue 4): standalone runner agents against real servers,
// faulted with SIGKILL, SIGSTOP and server outages. Jobs write down where
// and when they ran (recordLines) so each test can check the runners' own
// account of what happened against the servers'.

// runnerWait bounds waits for a runner to register, be adopted, or be
// marked down: a second or two when healthy, a runner_timeout for down.
const runnerWait = 45 * time.Second

// startServerTimeout starts a server whose runners are marked down, and
// their jobs handed back, after timeout of silence (runner_timeout).
func startServerTimeout(t *testing.T, name, timeout string) *testcluster.Server {
	t.Helper()
	cfg := writeFile(t, "server.hcl", fmt.Sprintf("server {\n  runner_timeout = %q\n}\n", timeout))
	return testcluster.StartServer(t, testcluster.ServerOptions{Name: name, ExtraArgs: []string{"-config=" + cfg}})
}

// newToken creates an adoption token with `runner token create`, for any
// number of runners (-uses=0) unless args say otherwise.
func newToken(t *testing.T, s *testcluster.Server, args ...string) string {
	t.Helper()
	r := cliOK(t, s, append([]string{"runner", "token", "create", "-uses=0", "-description", t.Name()}, args...)...)
	tok, _, _ := strings.Cut(r.stdout, "\n")
	if tok = strings.TrimSpace(tok); tok == "" {
		t.Fatalf("runner token create printed no token on its first line: %v", r)
	}
	return tok
}

// startAdopted starts a runner against s with an adoption token (a new one
// unless opts.Token is set) and waits until s lists it adopted and ready.
func startAdopted(t *testing.T, s *testcluster.Server, opts testcluster.RunnerOptions) *testcluster.Runner {
	t.Helper()
	if len(opts.Servers) == 0 {
		opts.Servers = []string{s.Addr()}
	}
	if opts.Token == "" {
		opts.Token = newToken(t, s)
	}
	r := testcluster.StartRunner(t, opts)
	r.WaitListed(s, "adopted", "ready", runnerWait)
	return r
}

// recordDir makes a directory jobs write their records to. It is not a
// t.TempDir: on_demand jobs run as nobody and must be able to reach and
// write it, and t.TempDir's parent is private to root.
func recordDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "outpost-e2e-records-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// recordCmd is a shell command with which a step notes an event in the
// file of the runner it runs on: the event, its job, attempt, and the time
// in Unix nanoseconds.
func recordCmd(dir, event string) string {
	return `echo "` + event + ` $OUTPOST_JOB_ID $OUTPOST_ATTEMPT $(date +%s%N)" >> ` + dir + `/ran-$OUTPOST_RUNNER_ID`
}

// recordLine is one event a job wrote down about itself.
type recordLine struct {
	runner, event, job string
	attempt            int
	at                 int64 // Unix nanoseconds
}

func (l recordLine) String() string {
	return fmt.Sprintf("%s %s attempt %d on %s", l.event, l.job, l.attempt, l.runner)
}

// readRecords reads every record the jobs wrote to dir.
func readRecords(t *testing.T, dir string) []recordLine {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "ran-*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []recordLine
	for _, f := range files {
		runner := strings.TrimPrefix(filepath.Base(f), "ran-")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 4 {
				// A line being written right now; the next read has it whole.
				continue
			}
			attempt, err1 := strconv.Atoi(fields[2])
			at, err2 := strconv.ParseInt(fields[3], 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("bad record line in %s: %q", f, sc.Text())
			}
			out = append(out, recordLine{runner: runner, event: fields[0], job: fields[1], attempt: attempt, at: at})
		}
	}
	return out
}

// findRecords returns the records that match event, job, attempt (0: any)
// and runner ("": any).
func findRecords(recs []recordLine, event, job string, attempt int, runner string) []recordLine {
	var out []recordLine
	for _, r := range recs {
		if (event == "" || r.event == event) && (job == "" || r.job == job) &&
			(attempt == 0 || r.attempt == attempt) && (runner == "" || r.runner == runner) {
			out = append(out, r)
		}
	}
	return out
}

// waitRecord waits until a job has written the given record.
func waitRecord(t *testing.T, dir, event, job string, attempt int, runner string) recordLine {
	t.Helper()
	var got recordLine
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		recs := readRecords(t, dir)
		m := findRecords(recs, event, job, attempt, runner)
		if len(m) == 0 {
			return false, fmt.Sprintf("no %q record of job %s attempt %d on runner %q yet; records: %v", event, job, attempt, runner, recs)
		}
		got = m[0]
		return true, ""
	})
	return got
}

// jobSeen is one state of a job, as a watcher saw it.
type jobSeen struct {
	at      time.Time
	status  string
	attempt uint32
	runner  string
	lease   uint64
	reason  string
}

func (s jobSeen) String() string {
	return fmt.Sprintf("%s %s attempt %d runner %q lease %d (%s)", s.at.Format("15:04:05.000"), s.status, s.attempt, s.runner, s.lease, s.reason)
}

// jobWatch follows a job with blocking reads and keeps every distinct state
// it saw, so a test can check states that pass quickly (a requeued job is
// pending only until the dispatcher places it again).
type jobWatch struct {
	mu    sync.Mutex
	trail []jobSeen
}

func watchJob(t *testing.T, s *testcluster.Server, id string) *jobWatch {
	t.Helper()
	w := &jobWatch{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var index uint64
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
			resp, err := s.Client().Jobs.GetJob(rctx, connect.NewRequest(&pb.GetJobRequest{
				Id: id, WaitIndex: index, Wait: durationpb.New(5 * time.Second),
			}))
			rcancel()
			if err != nil {
				// The server is down, or restarting: ask again shortly.
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			w.add(resp.Msg.Job)
			index = resp.Msg.Job.ModifyIndex
		}
	}()
	return w
}

func (w *jobWatch) add(j *pb.Job) {
	s := jobSeen{at: time.Now(), status: j.Status, attempt: j.Attempt, runner: j.RunnerId, lease: j.Lease, reason: j.StatusReason}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.trail); n > 0 {
		last := w.trail[n-1]
		last.at = s.at
		if last == s {
			return
		}
	}
	w.trail = append(w.trail, s)
}

func (w *jobWatch) seen() []jobSeen {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]jobSeen(nil), w.trail...)
}

func trailString(trail []jobSeen) string {
	var b strings.Builder
	for _, s := range trail {
		b.WriteString("\n  " + s.String())
	}
	return b.String()
}

// pick returns the runner of rs with the given id, and the others.
func pick(t *testing.T, id string, rs ...*testcluster.Runner) (*testcluster.Runner, []*testcluster.Runner) {
	t.Helper()
	var found *testcluster.Runner
	var rest []*testcluster.Runner
	for _, r := range rs {
		if r.ID() == id {
			found = r
		} else {
			rest = append(rest, r)
		}
	}
	if found == nil {
		t.Fatalf("runner %q is none of this test's runners", id)
	}
	return found, rest
}

// vmRSS reads a process's resident set size from /proc, or "" if it cannot.
func vmRSS(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// A runner started with -gossip-port=-1 keeps to its RPC stream, as its
// help promises: it starts, registers and runs jobs.
func TestRunnerWithoutGossip(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "nogossip"})
	tok := newToken(t, s)
	// Started by hand rather than with StartRunner, which works around
	// a refusal of -gossip-port=-1 so that the other tests can go on.
	p := testcluster.StartProcess(t, testcluster.ProcessOptions{
		Name: "nogossip-runner",
		Args: append([]string{"runner", "agent", "-server=" + s.Addr(), "-name=nogossip-runner", "-data-dir=" + t.TempDir(),
			"-token=" + tok, "-bind=127.0.0.1", "-gossip-port=-1", "-log-level=debug"}, testcluster.RunnerTLS(t).Args()...),
	})
	banner := regexp.MustCompile(`==> outpost runner (r-\S+) started`)
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		if p.Exited() {
			t.Fatalf("`outpost runner agent -gossip-port=-1` exited (%s); its help says -1 means \"do not join\" the gossip pool:\n%s", p.ExitState(), p.Tail(20))
		}
		return banner.MatchString(p.Logs()), "no start banner yet:\n" + p.Tail(10)
	})
	if strings.Contains(p.Logs(), "memberlist") {
		t.Errorf("a runner started with -gossip-port=-1 joined a gossip pool anyway:\n%s", p.Tail(30))
	}
	project := writeFile(t, "outpost.hcl", `project = "nogossip"

job "hi" {
  step "s" {
    command = ["echo", "hello without gossip"]
  }
}
`)
	j := waitFinished(t, s, runDetached(t, s, "-file", project, "hi"))
	if j.Status != rpc.JobSucceeded {
		t.Errorf("job on a runner without gossip is %s (%s), want succeeded", j.Status, j.StatusReason)
	}
}

// A runner killed mid-job: after runner_timeout its job is handed back,
// runs again on the other runner, and the dead runner is listed down.
func TestRunnerKilledMidJob(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "killed", "3s")
	rec := recordDir(t)
	labels := map[string]string{"pool": "kill"}
	a := startAdopted(t, s, testcluster.RunnerOptions{Name: "kill-a", Labels: labels, Capacity: 1})
	b := startAdopted(t, s, testcluster.RunnerOptions{Name: "kill-b", Labels: labels, Capacity: 1})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-kill", "-target-label", "pool=kill")
	project := writeFile(t, "outpost.hcl", `project = "killed"

runner {
  profile = "pool-kill"
}

job "slow" {
  step "work" {
    script = <<-EOT
      `+recordCmd(rec, "start")+`
      sleep 8
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
	id := runDetached(t, s, "-file", project, "slow")
	w := watchJob(t, s, id)
	j := waitStatus(t, s, id, rpc.JobRunning)
	victim, rest := pick(t, j.RunnerId, a, b)
	other := rest[0]
	waitRecord(t, rec, "start", id, 1, victim.ID())

	killed := time.Now()
	victim.Kill()

	waitJob(t, s, id, "attempt 2", func(j *pb.Job) bool { return j.Attempt >= 2 })
	final := waitFinished(t, s, id)
	trail := w.seen()
	if final.Status != rpc.JobSucceeded || final.Attempt != 2 || final.RunnerId != other.ID() {
		t.Errorf("job ended %s (%s), attempt %d on runner %s; want succeeded, attempt 2 on the surviving runner %s; states seen:%s",
			final.Status, final.StatusReason, final.Attempt, final.RunnerId, other.ID(), trailString(trail))
	}

	// The hand-back must say why, in words that name the runner.
	var requeued *jobSeen
	for i, st := range trail {
		if st.attempt >= 2 {
			if requeued == nil {
				requeued = &trail[i]
			}
			if st.status == rpc.JobPending && strings.Contains(st.reason, "lost") && strings.Contains(st.reason, victim.ID()) {
				requeued = &trail[i]
				break
			}
		}
	}
	switch {
	case requeued == nil:
		t.Errorf("never saw attempt 2; states seen:%s", trailString(trail))
	case !strings.Contains(requeued.reason, "lost") || !strings.Contains(requeued.reason, victim.ID()):
		t.Errorf("requeued job's reason %q does not say that attempt 1 was lost with runner %s; states seen:%s", requeued.reason, victim.ID(), trailString(trail))
	default:
		t.Logf("observation: %v from SIGKILL of runner %s to the job's requeue (runner_timeout 3s): %q",
			requeued.at.Sub(killed).Round(10*time.Millisecond), victim.ID(), requeued.reason)
	}

	// The runners' own records: attempt 1 started on the victim and died
	// with it, attempt 2 ran whole on the other.
	recs := readRecords(t, rec)
	if n := len(findRecords(recs, "end", id, 1, "")); n != 0 {
		t.Errorf("attempt 1 on the killed runner ran to its end: %v", recs)
	}
	if len(findRecords(recs, "start", id, 2, other.ID())) != 1 || len(findRecords(recs, "end", id, 2, other.ID())) != 1 {
		t.Errorf("attempt 2 did not run once, whole, on %s: %v", other.ID(), recs)
	}
	if n := len(findRecords(recs, "start", id, 0, "")); n != 2 {
		t.Errorf("job started %d times, want 2 (one per attempt): %v", n, recs)
	}

	victim.WaitListed(s, "adopted", "down", runnerWait)
	if x, err := other.Listed(s); err != nil || !testcluster.RunnerMatches(x, "adopted", "ready") {
		t.Errorf("the surviving runner is not listed adopted and ready: %v %v", x, err)
	}
	list := cliOK(t, s, "runner", "list")
	for _, line := range strings.Split(list.stdout, "\n") {
		if strings.HasPrefix(line, victim.ID()) && !strings.Contains(line, " down ") {
			t.Errorf("runner list does not show the killed runner down: %q\n%v", line, list)
		}
	}
}

// A runner process that crashes (SIGKILL to it alone, as the OOM killer
// would do) must not leave its job running unsupervised: once the job is
// handed to another runner, the old attempt's processes must be gone, or two
// runners run the job at once.
func TestRunnerCrashLeavesNoOrphanedJob(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "crash", "3s")
	rec := recordDir(t)
	labels := map[string]string{"pool": "crash"}
	a := startAdopted(t, s, testcluster.RunnerOptions{Name: "crash-a", Labels: labels, Capacity: 1})
	b := startAdopted(t, s, testcluster.RunnerOptions{Name: "crash-b", Labels: labels, Capacity: 1})
	project := writeFile(t, "outpost.hcl", `project = "crash"

job "slow" {
  step "work" {
    script = <<-EOT
      echo $$ > `+rec+`/pid-$OUTPOST_JOB_ID-$OUTPOST_ATTEMPT
      `+recordCmd(rec, "start")+`
      sleep 8
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
	id := runDetached(t, s, "-file", project, "slow")
	j := waitStatus(t, s, id, rpc.JobRunning)
	victim, rest := pick(t, j.RunnerId, a, b)
	other := rest[0]
	waitRecord(t, rec, "start", id, 1, victim.ID())
	stepPid := readPid(t, filepath.Join(rec, "pid-"+id+"-1"))

	// The runner process alone, not its process group or its jobs'.
	if err := syscall.Kill(victim.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := victim.Wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitRecord(t, rec, "start", id, 2, other.ID())
	if testcluster.PidAlive(stepPid) {
		t.Errorf("attempt 2 runs on %s while attempt 1's step (pid %d) still runs, orphaned by the crashed runner %s",
			other.ID(), stepPid, victim.ID())
	}
	final := waitFinished(t, s, id)
	if final.Status != rpc.JobSucceeded || final.Attempt != 2 || final.RunnerId != other.ID() {
		t.Errorf("job ended %s (%s), attempt %d on %q; want succeeded, attempt 2 on %s", final.Status, final.StatusReason, final.Attempt, final.RunnerId, other.ID())
	}
	if ends := findRecords(readRecords(t, rec), "end", id, 1, ""); len(ends) != 0 {
		t.Errorf("attempt 1's step ran to its end after its runner crashed and the job was handed to %s: %v", other.ID(), ends)
	}
}

// A result that finishes while no server is up waits in the runner's
// outbox, across a runner restart too, and arrives once a server is back.
func TestResultsSurviveServerOutage(t *testing.T) {
	e2e(t)
	for _, restartRunner := range []bool{false, true} {
		name := "server-down"
		if restartRunner {
			name = "server-down-runner-restarted"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The default runner_timeout (15s): long enough for the runner's
			// reconnect backoff (up to 10s) once the server is back.
			s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "outage"})
			rec := recordDir(t)
			r := startAdopted(t, s, testcluster.RunnerOptions{Name: "outage-runner", Capacity: 1})
			project := writeFile(t, "outpost.hcl", `project = "outage"

job "offline" {
  step "work" {
    script = <<-EOT
      echo "begin-line $OUTPOST_JOB_ID"
      `+recordCmd(rec, "start")+`
      sleep 3
      echo "end-line $OUTPOST_JOB_ID"
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
			id := runDetached(t, s, "-file", project, "offline")
			waitRecord(t, rec, "start", id, 1, r.ID())
			s.Kill()

			// The job ends while no server is up; its result goes to the
			// outbox, as the runner says.
			waitRecord(t, rec, "end", id, 1, r.ID())
			testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
				return strings.Contains(r.Logs(), "result kept in outbox until a server is reachable"),
					"the runner has not said it kept the result in its outbox:\n" + r.Tail(15)
			})
			if restartRunner {
				r.Kill()
				r.Restart()
			}

			s.Restart()
			j := waitFinished(t, s, id)
			if j.Status != rpc.JobSucceeded || j.Attempt != 1 || j.RunnerId != r.ID() || j.ExitCode != 0 {
				t.Errorf("after the outage the job is %s (%s), attempt %d on %q, exit %d; want succeeded, attempt 1 on %s, exit 0",
					j.Status, j.StatusReason, j.Attempt, j.RunnerId, j.ExitCode, r.ID())
			}
			text := logText(logChunks(t, s, id))
			for _, want := range []string{"stdout: begin-line " + id, "stdout: end-line " + id} {
				if !strings.Contains(text, want) {
					t.Errorf("job log lacks %q; log:\n%s", want, text)
				}
			}
			if starts := findRecords(readRecords(t, rec), "start", id, 0, ""); len(starts) != 1 {
				t.Errorf("the job's step started %d times, want once (its one result was waiting in the outbox): %v", len(starts), starts)
			}
			// The runner's own account: it starts the attempt once. (A second
			// start cancelled within milliseconds may not reach the step's
			// first command, so the records above can miss it.)
			startedRE := regexp.MustCompile(`job starting: job=` + id + ` lease=` + strconv.FormatUint(j.Lease, 10) + `\b`)
			if n := len(startedRE.FindAllString(r.Logs(), -1)); n != 1 {
				t.Errorf("the runner logged %d starts of job %s lease %d (/%s/), want one: a finished attempt whose result waits in the outbox was started again", n, id, j.Lease, startedRE.String())
			}
			r.WaitListed(s, "adopted", "ready", runnerWait)
		})
	}
}

// Fencing: a runner frozen past runner_timeout loses its job to another
// runner, and its watchdog kills the old attempt before the new one
// starts; when it thaws, its late report of the old attempt is refused and
// the server's record stays the second attempt's.
func TestFencingFrozenRunner(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "fencing", "3s")
	rec := recordDir(t)
	labels := map[string]string{"pool": "fence"}
	a := startAdopted(t, s, testcluster.RunnerOptions{Name: "fence-a", Labels: labels, Capacity: 1})
	b := startAdopted(t, s, testcluster.RunnerOptions{Name: "fence-b", Labels: labels, Capacity: 1})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-fence", "-target-label", "pool=fence")
	project := writeFile(t, "outpost.hcl", `project = "fencing"

variable "profile" {
  default = "pool-fence"
}

runner {
  profile = var.profile
}

job "fenced" {
  step "work" {
    script = <<-EOT
      `+lockedRecord(rec)+`
      `+recordCmd(rec, "start")+`
      echo "attempt $OUTPOST_ATTEMPT on $OUTPOST_RUNNER_ID"
      sleep 6
      `+recordCmd(rec, "end")+`
      echo "done attempt $OUTPOST_ATTEMPT"
    EOT
  }
}

job "probe" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "probe")+`
    EOT
  }
}
`)
	id := runDetached(t, s, "-file", project, "fenced")
	w := watchJob(t, s, id)
	first := waitStatus(t, s, id, rpc.JobRunning)
	frozen, rest := pick(t, first.RunnerId, a, b)
	other := rest[0]
	waitRecord(t, rec, "start", id, 1, frozen.ID())

	frozen.Freeze()
	second := waitJob(t, s, id, "attempt 2 running on "+other.ID(), func(j *pb.Job) bool {
		return j.Attempt == 2 && j.RunnerId == other.ID() && (j.Status == rpc.JobRunning || rpc.JobTerminal(j.Status))
	})
	if second.Lease == first.Lease {
		t.Fatalf("attempt 2 has the lease of attempt 1 (%d)", first.Lease)
	}
	frozen.WaitListed(s, "adopted", "down", runnerWait)
	// The frozen runner's step is killed by its watchdog when the lease
	// runs out, before attempt 2 starts (the lock tells), so the runner
	// has the old attempt's end to report the moment it thaws.
	frozen.Thaw()

	// A job only the thawed runner may take. Its result comes after the
	// stale one (the outbox is sent first on every connection, and reports
	// on one stream are applied in order), so once it is in, the stale
	// report has been dealt with.
	cliOK(t, s, "runner", "profile", "set", "-name", "only-thawed", "-target-runner-id", frozen.ID())
	frozen.WaitListed(s, "adopted", "ready", runnerWait)
	probe := waitFinished(t, s, runDetached(t, s, "-file", project, "-var", "profile=only-thawed", "probe"))
	if probe.Status != rpc.JobSucceeded || probe.RunnerId != frozen.ID() {
		t.Errorf("probe job on the thawed runner: %s (%s) on %q", probe.Status, probe.StatusReason, probe.RunnerId)
	}

	final := waitFinished(t, s, id)
	trail := w.seen()
	if final.Status != rpc.JobSucceeded || final.Attempt != 2 || final.RunnerId != other.ID() || final.Lease != second.Lease {
		t.Errorf("job ended %s (%s), attempt %d on %q with lease %d; want succeeded, attempt 2 on %s with lease %d; states seen:%s",
			final.Status, final.StatusReason, final.Attempt, final.RunnerId, final.Lease, other.ID(), second.Lease, trailString(trail))
	}
	// Once attempt 2 was handed out, nothing of attempt 1 may show again.
	for i, st := range trail {
		if st.attempt < 2 {
			continue
		}
		for _, later := range trail[i:] {
			if later.attempt != 2 || (later.runner != "" && later.runner != other.ID()) {
				t.Errorf("the job went back to attempt %d on %q after attempt 2 was handed out: %v; states seen:%s", later.attempt, later.runner, later, trailString(trail))
			}
		}
		break
	}
	// Evidence that the thawed runner had a late result to report.
	lateRE := regexp.MustCompile(`job finished: job=` + id + ` lease=` + strconv.FormatUint(first.Lease, 10) + `\b.*`)
	if m := lateRE.FindString(frozen.Logs()); m != "" {
		t.Logf("observation: the thawed runner's late result for attempt 1: %s", m)
	}
	recs := readRecords(t, rec)
	if len(findRecords(recs, "end", id, 2, other.ID())) != 1 {
		t.Errorf("attempt 2 did not run to its end on %s: %v", other.ID(), recs)
	}
	if got := findRecords(recs, "end", id, 1, frozen.ID()); len(got) != 0 {
		t.Errorf("attempt 1 ran to its end on the frozen runner: its watchdog did not stop it: %v", got)
	}
	if got := findRecords(recs, "overlap", id, 0, ""); len(got) != 0 {
		t.Errorf("attempts 1 and 2 were alive at the same time: %v", got)
	}
	// The server's log of the job must have attempt 2's end.
	text := logText(logChunks(t, s, id))
	if !strings.Contains(text, "stdout: done attempt 2") {
		t.Errorf("job log lacks attempt 2's last line; log:\n%s", text)
	}
	if j := statusJSON(t, s, id); j.Attempt != 2 || j.RunnerId != other.ID() || j.Status != rpc.JobSucceeded {
		t.Errorf("job status -json: %s attempt %d on %q; want succeeded, attempt 2 on %s", j.Status, j.Attempt, j.RunnerId, other.ID())
	}
}

// A runner without a token waits, pending, and so does the work only it
// could do, with a reason that says what to run; adopting it starts both.
func TestAdoptionPendingUntilAdopted(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "adopt"})
	rec := recordDir(t)
	r := testcluster.StartRunner(t, testcluster.RunnerOptions{Servers: []string{s.Addr()}, Name: "newcomer"})
	r.WaitListed(s, "pending", "", runnerWait)
	project := writeFile(t, "outpost.hcl", `project = "adopt"

job "probe" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "probe")+`
    EOT
  }
}
`)
	id := runDetached(t, s, "-file", project, "probe")
	waitJob(t, s, id, "pending, waiting for adoption", func(j *pb.Job) bool {
		return j.Status == rpc.JobPending && strings.Contains(j.StatusReason, "pending adoption") &&
			strings.Contains(j.StatusReason, "outpost runner adopt "+r.ID())
	})
	st := cliOK(t, s, "job", "status", id)
	if !strings.Contains(st.stdout, "pending adoption") || !strings.Contains(st.stdout, "outpost runner adopt") {
		t.Errorf("job status does not say the job waits for an adoption: %v", st)
	}
	if recs := readRecords(t, rec); len(recs) != 0 {
		t.Fatalf("a job ran on a runner pending adoption: %v", recs)
	}

	// By name, as an operator reading `runner list` would.
	ad := cliOK(t, s, "runner", "adopt", "newcomer")
	if !strings.Contains(ad.stdout, r.ID()) || !strings.Contains(ad.stdout, "adopted") {
		t.Errorf("runner adopt does not confirm: %v", ad)
	}
	j := waitFinished(t, s, id)
	if j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
		t.Errorf("after the adoption the job is %s (%s) on %q; want succeeded on %s", j.Status, j.StatusReason, j.RunnerId, r.ID())
	}
	if len(findRecords(readRecords(t, rec), "probe", id, 1, r.ID())) != 1 {
		t.Errorf("the adopted runner has no record of the job: %v", readRecords(t, rec))
	}
	r.WaitListed(s, "adopted", "ready", runnerWait)
}

// A runner started with a token from `runner token create` is adopted on
// first contact and runs work at once.
func TestAdoptionToken(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "token"})
	rec := recordDir(t)
	tok := newToken(t, s)
	r := testcluster.StartRunner(t, testcluster.RunnerOptions{Servers: []string{s.Addr()}, Name: "trusted", Token: tok})
	x := r.WaitListed(s, "", "ready", runnerWait)
	if x.Status != "adopted" {
		t.Fatalf("a runner with a valid token is listed %s (%s) on first contact, want adopted", x.Status, x.StatusReason)
	}
	if strings.Contains(r.Logs(), "not adopted") {
		t.Errorf("the runner with a token was told it is not adopted:\n%s", r.Tail(20))
	}
	project := writeFile(t, "outpost.hcl", `project = "token"

job "probe" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "probe")+`
    EOT
  }
}
`)
	id := runDetached(t, s, "-file", project, "probe")
	if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
		t.Errorf("job is %s (%s) on %q; want succeeded on %s", j.Status, j.StatusReason, j.RunnerId, r.ID())
	}
	if len(findRecords(readRecords(t, rec), "probe", id, 1, r.ID())) != 1 {
		t.Errorf("the runner has no record of the job: %v", readRecords(t, rec))
	}
	insp := cliOK(t, s, "runner", "inspect", "-json", r.ID())
	if !strings.Contains(insp.stdout, `"adopted"`) {
		t.Errorf("runner inspect -json does not show the runner adopted: %v", insp)
	}
	// Observation: the resident memory of an idle runner.
	if rss := vmRSS(r.Pid()); rss != "" {
		t.Logf("observation: idle runner %s VmRSS %s", r.ID(), rss)
	}
}

// A rejected runner's stream is closed and it never gets work: jobs only it
// could take wait, saying why, while other work goes elsewhere.
func TestAdoptionRejected(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "reject"})
	rec := recordDir(t)
	good := startAdopted(t, s, testcluster.RunnerOptions{Name: "good", Labels: map[string]string{"role": "good"}, Capacity: 2})
	bad := testcluster.StartRunner(t, testcluster.RunnerOptions{Servers: []string{s.Addr()}, Name: "bad", Labels: map[string]string{"role": "bad"}})
	bad.WaitListed(s, "pending", "", runnerWait)

	rj := cliOK(t, s, "runner", "reject", bad.ID())
	if !strings.Contains(rj.stdout, "rejected") {
		t.Errorf("runner reject does not confirm: %v", rj)
	}
	bad.WaitListed(s, "rejected", "", runnerWait)
	testcluster.WaitFor(t, runnerWait, func() (bool, string) {
		return strings.Contains(bad.Logs(), "was rejected by an operator"),
			"the rejected runner has not been told (its stream should be closed):\n" + bad.Tail(15)
	})

	cliOK(t, s, "runner", "profile", "set", "-name", "only-bad", "-target-runner-id", bad.ID())
	cliOK(t, s, "runner", "profile", "set", "-name", "bad-label", "-target-label", "role=bad")
	project := writeFile(t, "outpost.hcl", `project = "reject"

variable "profile" {
  default = ""
}

job "targeted" {
  runner {
    profile = var.profile
  }
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
    EOT
  }
}

job "anywhere" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "ran")+`
    EOT
  }
}
`)
	byID := runDetached(t, s, "-file", project, "-var", "profile=only-bad", "targeted")
	byLabel := runDetached(t, s, "-file", project, "-var", "profile=bad-label", "targeted")
	var anywhere []string
	for range 4 {
		anywhere = append(anywhere, runDetached(t, s, "-file", project, "anywhere"))
	}
	for _, id := range anywhere {
		if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded || j.RunnerId != good.ID() {
			t.Errorf("job %s with no profile is %s (%s) on %q; want succeeded on the adopted runner %s", id, j.Status, j.StatusReason, j.RunnerId, good.ID())
		}
	}
	for _, id := range []string{byID, byLabel} {
		j := waitJob(t, s, id, "pending because its only runner was rejected", func(j *pb.Job) bool {
			return j.Status == rpc.JobPending && strings.Contains(j.StatusReason, "rejected")
		})
		if !strings.Contains(j.StatusReason, bad.ID()) {
			t.Errorf("job %s's reason %q does not name the rejected runner %s", id, j.StatusReason, bad.ID())
		}
	}
	if recs := findRecords(readRecords(t, rec), "", "", 0, bad.ID()); len(recs) != 0 {
		t.Errorf("the rejected runner ran jobs: %v", recs)
	}
	if x, err := bad.Listed(s); err != nil || x.Status != "rejected" || x.Running != 0 {
		t.Errorf("rejected runner listed as %v (%v); want rejected, holding no jobs", x, err)
	}
}

// Draining: the running job finishes, new ones wait saying why, and ending
// the drain lets them run.
func TestAdoptionDrain(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "drain"})
	rec := recordDir(t)
	gate := filepath.Join(rec, "gate")
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "drainee", Capacity: 2})
	project := writeFile(t, "outpost.hcl", `project = "drain"

job "gated" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "start")+`
      i=0; while [ ! -f `+gate+` ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
      `+recordCmd(rec, "end")+`
    EOT
  }
}

job "quick" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "start")+`
    EOT
  }
}
`)
	running := runDetached(t, s, "-file", project, "gated")
	waitRecord(t, rec, "start", running, 1, r.ID())

	dr := cliOK(t, s, "runner", "drain", r.ID())
	if !strings.Contains(dr.stdout, "draining") {
		t.Errorf("runner drain does not confirm: %v", dr)
	}
	r.WaitListed(s, "adopted", "draining", runnerWait)

	queued := runDetached(t, s, "-file", project, "quick")
	waitJob(t, s, queued, "pending because its runner drains", func(j *pb.Job) bool {
		return j.Status == rpc.JobPending && strings.Contains(j.StatusReason, "draining")
	})
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if j := waitFinished(t, s, running); j.Status != rpc.JobSucceeded {
		t.Errorf("the job running when the drain began is %s (%s), want succeeded", j.Status, j.StatusReason)
	}
	// The drain outlasts the job that was running.
	if j, err := getJob(context.Background(), s, queued); err != nil || j.Status != rpc.JobPending || !strings.Contains(j.StatusReason, "draining") {
		t.Errorf("with the runner still draining the new job is %v (%v); want pending, draining", j, err)
	}
	if recs := findRecords(readRecords(t, rec), "start", queued, 0, ""); len(recs) != 0 {
		t.Errorf("a job started on a draining runner: %v", recs)
	}

	un := cliOK(t, s, "runner", "drain", "-undo", r.ID())
	if !strings.Contains(un.stdout, "takes new jobs again") {
		t.Errorf("runner drain -undo does not confirm: %v", un)
	}
	r.WaitListed(s, "adopted", "ready", runnerWait)
	if j := waitFinished(t, s, queued); j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
		t.Errorf("after the drain ended the job is %s (%s) on %q; want succeeded on %s", j.Status, j.StatusReason, j.RunnerId, r.ID())
	}
}

// A runner never runs more jobs at once than its capacity, by its own
// account of when each job started and ended.
func TestCapacityRespected(t *testing.T) {
	e2e(t)
	const capacity, jobs = 2, 12
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "capacity"})
	rec := recordDir(t)
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "two-slots", Capacity: capacity})
	project := writeFile(t, "outpost.hcl", `project = "capacity"

job "slot" {
  step "s" {
    script = <<-EOT
      `+recordCmd(rec, "start")+`
      sleep 1
      `+recordCmd(rec, "end")+`
    EOT
  }
}
`)
	var ids []string
	for range jobs {
		ids = append(ids, runDetached(t, s, "-file", project, "slot"))
	}
	for _, id := range ids {
		if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded || j.RunnerId != r.ID() {
			t.Errorf("job %s is %s (%s) on %q; want succeeded on %s", id, j.Status, j.StatusReason, j.RunnerId, r.ID())
		}
	}

	recs := readRecords(t, rec)
	type event struct {
		at    int64
		delta int
		rec   recordLine
	}
	var events []event
	for _, id := range ids {
		starts, ends := findRecords(recs, "start", id, 0, r.ID()), findRecords(recs, "end", id, 0, r.ID())
		if len(starts) != 1 || len(ends) != 1 {
			t.Errorf("job %s has %d start and %d end records on %s, want one each", id, len(starts), len(ends), r.ID())
			continue
		}
		events = append(events, event{starts[0].at, +1, starts[0]}, event{ends[0].at, -1, ends[0]})
	}
	// Ends before starts at the same instant: a slot freed and taken in the
	// same nanosecond is not an overlap.
	sort.Slice(events, func(i, j int) bool {
		if events[i].at != events[j].at {
			return events[i].at < events[j].at
		}
		return events[i].delta < events[j].delta
	})
	running, most := 0, 0
	for _, e := range events {
		running += e.delta
		if running > most {
			most = running
		}
		if running > capacity {
			t.Errorf("%d jobs ran at once on a runner with capacity %d, at %s", running, capacity, e.rec)
		}
	}
	t.Logf("observation: at most %d of %d jobs ran at once on a runner with capacity %d", most, jobs, capacity)
}

// A runner killed mid-job leaves its job's working directory behind; the
// next start on the same data dir removes it before taking work, and
// leaves alone what it did not make.
func TestRunnerSweepsJobDirsAtStart(t *testing.T) {
	e2e(t)
	s := startServerTimeout(t, "sweep", "3s")
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "sweeper", Capacity: 1})
	work := filepath.Join(r.DataDir(), "work")
	decoy := filepath.Join(work, "notes.txt")
	if err := os.WriteFile(decoy, []byte("not a job's"), 0o600); err != nil {
		t.Fatal(err)
	}
	project := writeFile(t, "outpost.hcl", `project = "sweep"

job "nap" {
  step "s" {
    script = "mkdir -p deep/er && echo x > deep/er/f && chmod 500 deep/er && echo started && sleep 60"
  }
}
`)
	id := runDetached(t, s, "-file", project, "nap")
	dir := filepath.Join(work, id+"-1")
	testcluster.WaitFor(t, jobTimeout, func() (bool, string) {
		_, err := os.Stat(filepath.Join(dir, "deep", "er", "f"))
		return err == nil, fmt.Sprintf("job %s has not made its files in %s yet: %v", id, dir, err)
	})
	r.Kill()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the killed runner's job directory should still be there: %v", err)
	}

	r.Restart()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("job directory %s is still there after the runner started again (%v)\n%s", dir, err, r.Tail(20))
	}
	if _, err := os.Stat(decoy); err != nil {
		t.Errorf("the sweep removed %s, which no job made: %v", decoy, err)
	}
	if !strings.Contains(r.Logs(), "removed the job directories an earlier run of this runner left behind") {
		t.Errorf("the runner does not say it removed the directories:\n%s", r.Tail(20))
	}
}
