package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// The checks must find what they are meant to find: each case below is a
// record with exactly one kind of violation in it, and a clean record
// must pass every check.

const sec = int64(time.Second)

// baseInputs is a clean record: job j-1 of pool a, acknowledged by s1, run
// once on r1 (pool a) and recorded as succeeded by every server.
func baseInputs() *Inputs {
	job := func() *pb.Job {
		return &pb.Job{Id: "j-1", Name: "a", Status: rpc.JobSucceeded, Attempt: 1, Lease: 10, RunnerId: "r-1"}
	}
	return &Inputs{
		T0:     0,
		Settle: 12 * time.Second,
		Load: LoadResult{
			Acked:    map[string]*SubmitAttempt{"j-1": {ID: "j-1", Job: "a", N: 1, Server: "s1", StartMono: 1 * sec, EndMono: 2 * sec}},
			Attempts: []SubmitAttempt{{ID: "j-1", Job: "a", N: 1, Server: "s1", StartMono: 1 * sec, EndMono: 2 * sec}},
			JobOf:    map[string]string{"j-1": "a"},
		},
		Executions: []*Execution{{X: "x1", Job: "j-1", Attempt: 1, Runner: "r-1", Start: 3 * sec, Last: 4 * sec, End: 4 * sec, Lock: "ok"}},
		Jobs: map[string]map[string]*pb.Job{
			"s1": {"j-1": job()}, "s2": {"j-1": job()}, "s3": {"j-1": job()},
		},
		Servers:    []string{"s1", "s2", "s3"},
		Reference:  "s1",
		RunnerName: map[string]string{"r-1": "r1", "r-2": "r2", "r-3": "r3"},
		RunnerPool: map[string]string{"r-1": "a", "r-2": "a", "r-3": "b"},
		JobPool:    map[string]string{"a": "a", "b": "b"},
		Logs:       map[string]string{"s1": "2026-01-01 [INFO] all fine\n"},
		Network:    true,
	}
}

func TestChecksFindEachViolation(t *testing.T) {
	cases := []struct {
		name  string
		check int // the one check that must fail; 0: none
		edit  func(in *Inputs)
	}{
		{"clean record", 0, func(in *Inputs) {}},
		{"acknowledged job missing on a server", 1, func(in *Inputs) {
			delete(in.Jobs["s3"], "j-1")
		}},
		{"servers disagree on the attempt", 2, func(in *Inputs) {
			in.Jobs["s2"]["j-1"].Lease = 11
		}},
		{"second execution while the first holds the lock", 3, func(in *Inputs) {
			in.Jobs["s1"]["j-1"].Attempt, in.Jobs["s2"]["j-1"].Attempt, in.Jobs["s3"]["j-1"].Attempt = 2, 2, 2
			in.Executions[0].End, in.Executions[0].Last = 0, 5*sec // killed later
			in.Executions = append(in.Executions, &Execution{X: "x2", Job: "j-1", Attempt: 2, Runner: "r-1", Start: 4 * sec, Last: 6 * sec, End: 6 * sec, Lock: "busy"})
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Lease = 20
			}
		}},
		{"intervals overlap (no lock seen)", 3, func(in *Inputs) {
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Attempt, in.Jobs[s]["j-1"].RunnerId = 2, "r-2"
			}
			in.Executions[0].End, in.Executions[0].Last = 0, 5*sec
			in.Executions = append(in.Executions, &Execution{X: "x2", Job: "j-1", Attempt: 2, Runner: "r-2", Start: 4 * sec, Last: 6 * sec, End: 6 * sec, Lock: "ok"})
			// r1's execution was killed: it is excused from check 6.
			in.Faults = []Fault{{Kind: KillRunner, Runners: []string{"r1"}, Begin: 5 * sec, Applied: 5 * sec, Healing: 7 * sec, Healed: 8 * sec}}
		}},
		{"an older attempt starts after a newer one", 4, func(in *Inputs) {
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Attempt, in.Jobs[s]["j-1"].RunnerId = 2, "r-2"
			}
			in.Executions = []*Execution{
				{X: "x2", Job: "j-1", Attempt: 2, Runner: "r-2", Start: 3 * sec, Last: 4 * sec, End: 4 * sec, Lock: "ok"},
				{X: "x1", Job: "j-1", Attempt: 1, Runner: "r-1", Start: 5 * sec, Last: 5 * sec, Termed: true, Lock: "ok"},
			}
		}},
		{"ran more often than its attempts", 5, func(in *Inputs) {
			in.Executions[0].End, in.Executions[0].Last = 0, 3*sec+sec/2
			in.Executions = append(in.Executions, &Execution{X: "x2", Job: "j-1", Attempt: 1, Runner: "r-1", Start: 5 * sec, Last: 6 * sec, End: 6 * sec, Lock: "ok"})
			in.Faults = []Fault{{Kind: KillRunner, Runners: []string{"r1"}, Begin: 3 * sec, Applied: 3 * sec, Healing: 4 * sec, Healed: 4 * sec}}
			// The second run of attempt 1 ends on an unfaulted runner and
			// is the recorded result: only check 5 objects.
			in.Faults[0].Healed = 4*sec + sec/2
		}},
		{"unfaulted runner's result not recorded", 6, func(in *Inputs) {
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Status = rpc.JobFailed
			}
		}},
		{"faulted runner's lost result is excused", 0, func(in *Inputs) {
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Status = rpc.JobLost
			}
			in.Faults = []Fault{{Kind: CutRunner, Runners: []string{"r1"}, Begin: 10 * sec, Applied: 10 * sec, Healing: 20 * sec, Healed: 20 * sec}}
		}},
		{"execution on the other pool's runner", 7, func(in *Inputs) {
			in.Executions[0].Runner = "r-3"
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].RunnerId = "r-3"
			}
		}},
		{"acknowledged job left assigned", 8, func(in *Inputs) {
			for _, s := range in.Servers {
				in.Jobs[s]["j-1"].Status = rpc.JobAssigned
			}
			in.Executions = nil
		}},
		{"isolated server acknowledges", 9, func(in *Inputs) {
			in.Faults = []Fault{{Kind: CutServer, Target: "s1", Servers: []string{"s1"}, Isolated: []string{"s1"}, Begin: 0, Applied: sec / 2, Healing: 30 * sec, Healed: 30 * sec}}
		}},
		{"isolated server answers a retry of a committed job", 0, func(in *Inputs) {
			in.Load.Attempts = append([]SubmitAttempt{{ID: "j-1", N: 1, Server: "s2", StartMono: sec / 4, EndMono: sec / 3, Err: "deadline_exceeded"}}, in.Load.Attempts...)
			in.Faults = []Fault{{Kind: CutServer, Target: "s1", Servers: []string{"s1"}, Isolated: []string{"s1"}, Begin: 0, Applied: sec / 2, Healing: 30 * sec, Healed: 30 * sec}}
		}},
		{"panic in a log", 10, func(in *Inputs) {
			in.Logs["r2"] = "starting\npanic: runtime error: index out of range [3] with length 3\n\ngoroutine 1 [running]:\n"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInputs()
			tc.edit(in)
			for _, c := range RunChecks(in) {
				want := 0
				if c.N == tc.check {
					want = 1
				}
				if (c.Count > 0) != (want > 0) {
					t.Errorf("check %d %s: %d violations, want %d: %v", c.N, c.Name, c.Count, want, c.Examples)
				}
			}
		})
	}
}

// The schedule is a function of the seed, keeps to its rules, and has
// freezes and cuts longer than the servers' runner_timeout.
func TestPlan(t *testing.T) {
	a := Plan(42, 30*time.Minute, 4, true)
	b := Plan(42, 30*time.Minute, 4, true)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("plans of one seed differ in length: %d, %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("plans of one seed differ at %d: %+v, %+v", i, a[i], b[i])
		}
	}
	kinds := map[string]int{}
	long := 0
	for i, p := range a {
		kinds[p.Kind]++
		if p.For > runnerTimeout && !strings.HasPrefix(p.Kind, "kill") {
			long++
		}
		active, servers := 0, 0
		for _, q := range a[:i+1] {
			if q.At <= p.At && p.At < q.At+q.For {
				active++
				if serverKind(q.Kind) {
					servers++
				}
			}
		}
		if active > 2 || servers > 1 {
			t.Fatalf("at %v: %d faults in force, %d of them on servers: %+v", p.At, active, servers, p)
		}
	}
	for _, k := range kindWeights {
		if kinds[k.kind] == 0 {
			t.Errorf("a 30-minute plan has no %s: %v", k.kind, kinds)
		}
	}
	if long == 0 {
		t.Errorf("no freeze or cut outlasts runner_timeout (%v)", runnerTimeout)
	}
	for _, p := range Plan(42, 30*time.Minute, 4, false) {
		for _, k := range kindWeights {
			if k.kind == p.Kind && k.network {
				t.Fatalf("a plan without network has %s", p.Kind)
			}
		}
	}
}

func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0B45F10A:3E3A":                         "10.241.69.11:15930",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80",
		"zz:1":                                  "",
	} {
		if got := procAddr(in); got != want {
			t.Errorf("procAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// The marker, run as the chaos jobs run it (this binary with MarkerEnv
// set): a second execution of a job while the first is alive sees the
// lock taken, a SIGKILLed one leaves its last tick, and the overlap check
// finds both.
func TestMarkerLockAndTicks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o777); err != nil {
		t.Fatal(err)
	}
	marker := func(attempt, ms string) *exec.Cmd {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), MarkerEnv+"="+dir, "OUTPOST_JOB_ID=j-1", "OUTPOST_ATTEMPT="+attempt, "OUTPOST_RUNNER_ID=r-1", workEnv+"="+ms)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := marker("1", "5000")
	// Until its start line is written, the lock may not be held yet.
	testwait.For(t, 10*time.Second, func() (bool, error) {
		execs, _, _ := ReadMarkers(dir)
		return len(execs) == 1 && execs[0].Last > execs[0].Start, fmt.Errorf("the first marker wrote no tick: %v", execs)
	})
	second := marker("2", "100")
	if err := second.Wait(); err != nil {
		t.Fatalf("second marker: %v", err)
	}
	_ = first.Process.Signal(syscall.SIGKILL)
	_ = first.Wait()

	execs, problems, err := ReadMarkers(dir)
	if err != nil || len(problems) > 0 || len(execs) != 2 {
		t.Fatalf("ReadMarkers: %v, problems %v, %d executions", err, problems, len(execs))
	}
	if execs[0].Ended() || execs[0].Lock != "ok" || execs[0].Last <= execs[0].Start {
		t.Errorf("the killed marker: %+v; want no end, lock ok, ticks after its start", execs[0])
	}
	if !execs[1].Ended() || execs[1].Lock != "busy" {
		t.Errorf("the second marker: %+v; want an end and lock busy", execs[1])
	}
	in := baseInputs()
	in.Executions = execs
	for _, s := range in.Servers {
		in.Jobs[s]["j-1"].Attempt = 2
	}
	for _, c := range RunChecks(in) {
		if c.N == 3 && c.Count == 0 {
			t.Errorf("check 3 misses the overlap of two live markers")
		}
	}
}
