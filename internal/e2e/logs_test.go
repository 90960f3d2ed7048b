package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/logcap"
	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Log limits at the source (issue 13): what a job prints costs the servers
// a bounded log, Raft directory and memory, whatever it prints.

// printScript prints size bytes as fast as it can, in lines of a number
// and 1000 x (the last line cut short).
func printScript(size int64) string {
	return fmt.Sprintf(`yes "$(head -c 1000 /dev/zero | tr '\0' x)" | head -c %d | awk '{print NR, $0}'`, size)
}

// usage samples, every 100ms until stopped, the peak resident memory of
// processes and the size of a directory.
type usage struct {
	mu      sync.Mutex
	peakRSS map[string]int64 // bytes, by name
	peakDir int64
	stop    chan struct{}
	done    chan struct{}
}

func sampleUsage(dir string, procs map[string]int) *usage {
	u := &usage{peakRSS: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			u.mu.Lock()
			for name, pid := range procs {
				u.peakRSS[name] = max(u.peakRSS[name], rssBytes(pid))
			}
			u.peakDir = max(u.peakDir, testcluster.DirSize(dir))
			u.mu.Unlock()
			select {
			case <-u.stop:
				return
			case <-t.C:
			}
		}
	}()
	return u
}

func (u *usage) end() {
	close(u.stop)
	<-u.done
}

// rssBytes is a process's resident memory, from /proc/PID/status.
func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

var markerRE = regexp.MustCompile(`^outpost: (\d+) lines \((\d+) bytes\) of output left out here`)

// A job printing 1 GiB as fast as it can ends succeeded with its head, one
// marker and its tail in its log, a live view that followed it to its last
// line, and costs the server a Raft directory and memory within the stated
// bounds (website/concepts.md: about 64 MiB of raft.db with the default
// settings, and a server's memory that this job does not grow by more
// than tens of MB), asserted with wide margins: these are bounds, not
// timings. Before the limits were enforced at the runner, 500 MB grew
// raft.db by 427 MB and the server to 1.6 GB.
func TestChattyJobLogIsBounded(t *testing.T) {
	e2e(t)
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "chatty", LogLevel: "info"})
	r := startAdopted(t, s, testcluster.RunnerOptions{Name: "chatty-runner", Labels: map[string]string{"pool": "chatty"}, Capacity: 2, LogLevel: "info"})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-chatty", "-target-label", "pool=chatty")
	const size = 1 << 30
	project := writeFile(t, "outpost.hcl", `project = "chatty"

runner {
  profile = "pool-chatty"
}

job "gigabyte" {
  step "print" {
    script = <<-EOT
      `+printScript(size)+`
    EOT
  }
}
`)
	raftDir := filepath.Join(s.DataDir(), "raft")
	dirBefore := testcluster.DirSize(raftDir)
	u := sampleUsage(raftDir, map[string]int{"server": s.Pid(), "runner": r.Pid()})
	id := runDetached(t, s, "-file", project, "gigabyte")
	follow := testcluster.StartProcess(t, testcluster.ProcessOptions{Name: "logs-follow", Args: []string{"job", "logs", "-f", id}, Env: s.Env()})
	j := waitJobFor(t, s, id, 10*time.Minute)
	if err := follow.Wait(jobTimeout); err != nil {
		t.Fatalf("job logs -f did not return after the job ended: %v", err)
	}
	u.end()
	if j.Status != rpc.JobSucceeded {
		t.Fatalf("job ended %s (%s), want succeeded", j.Status, j.StatusReason)
	}
	lastLine := (size + 1000) / 1001 // numbered 1..lastLine, the last cut short

	// The stored log: the step's header, the head, one marker, the tail.
	var out []string
	var marker []string
	for _, c := range logChunks(t, s, id) {
		for _, l := range c.Lines {
			switch {
			case l.Stream == "stdout":
				n, _, _ := strings.Cut(l.Text, " ")
				out = append(out, n)
			case markerRE.MatchString(l.Text):
				marker = append(marker, l.Text)
				out = append(out, "marker")
			case l.Stream == "system" && strings.HasPrefix(l.Text, "==> step print"):
			default:
				t.Errorf("unexpected line in the stored log: %.200q", l.Text)
			}
		}
	}
	if len(marker) != 1 {
		t.Fatalf("%d marker lines in the stored log, want 1: %q", len(marker), marker)
	}
	at := -1
	for i, n := range out {
		if n == "marker" {
			at = i
			continue
		}
		want := i + 1
		if at >= 0 {
			want = lastLine - (len(out) - 1 - i)
		}
		if n != strconv.Itoa(want) {
			t.Fatalf("stored line %d is output line %s, want %d: head, marker and tail are not whole", i, n, want)
		}
	}
	head, tail := at, len(out)-at-1
	m := markerRE.FindStringSubmatch(marker[0])
	dropped, _ := strconv.Atoi(m[1])
	if head+dropped+tail != lastLine {
		t.Errorf("head %d + dropped %d + tail %d lines != the %d printed", head, dropped, tail, lastLine)
	}
	// Lines of 1,001 bytes or so cost about 1,050: a 1 MiB head and a
	// 3 MiB tail, as the runner's defaults say.
	if head < 900 || head > 1010 || tail < 2900 || tail > 3010 {
		t.Errorf("head of %d lines and tail of %d, want about 1 MiB and 3 MiB of ~1 KiB lines", head, tail)
	}
	if j.LogBytes > logcap.MaxBytes || j.LogDroppedLines != uint64(dropped) {
		t.Errorf("job keeps %d log bytes (limit %d) and says %d lines dropped, the marker %d", j.LogBytes, logcap.MaxBytes, j.LogDroppedLines, dropped)
	}

	// The live view followed the job to its end.
	live := follow.Logs()
	if !strings.Contains(live, "\n"+strconv.Itoa(lastLine)+" ") || !strings.Contains(live, "1 xxxx") {
		t.Errorf("job logs -f lacks the first or the last line (%d bytes printed)", len(live))
	}

	growth, rssServer, rssRunner := u.peakDir-dirBefore, u.peakRSS["server"], u.peakRSS["runner"]
	t.Logf("raft dir grew by %.1f MiB; peak RSS server %.1f MiB, runner %.1f MiB; head %d, tail %d, %d lines left out",
		float64(growth)/(1<<20), float64(rssServer)/(1<<20), float64(rssRunner)/(1<<20), head, tail, dropped)
	if growth > 128<<20 {
		t.Errorf("the raft directory grew by %d MiB, over twice its stated bound of 64 MiB", growth>>20)
	}
	if rssServer > 300<<20 || rssRunner > 300<<20 {
		t.Errorf("peak memory %d MiB on the server, %d MiB on the runner; want well under 300 MiB", rssServer>>20, rssRunner>>20)
	}
}

// The Raft log is bounded in bytes, not only in entries: with 1 MiB
// between snapshots and 1 MiB behind them, jobs whose logs put 100 MiB
// through Raft in seconds leave a raft.db of 16 to 32 MiB (what arrives
// while a snapshot is taken stays in the log until the next; bolt grows
// its file by powers of two up to 16 MiB, then 16 MiB at a time), where
// counting entries alone kept all of it until a snapshot every 8,192.
func TestRaftLogBoundedInBytes(t *testing.T) {
	e2e(t)
	cfg := writeFile(t, "server.hcl", "server {\n  raft_snapshot_bytes = \"1MiB\"\n  raft_trailing_bytes = \"1MiB\"\n}\n")
	s := testcluster.StartServer(t, testcluster.ServerOptions{Name: "raft-bytes", LogLevel: "info", ExtraArgs: []string{"-config=" + cfg}})
	startAdopted(t, s, testcluster.RunnerOptions{Name: "raft-bytes-runner", Labels: map[string]string{"pool": "raftbytes"}, Capacity: 4, LogLevel: "info"})
	cliOK(t, s, "runner", "profile", "set", "-name", "pool-raftbytes", "-target-label", "pool=raftbytes")
	project := writeFile(t, "outpost.hcl", `project = "raftbytes"

runner {
  profile = "pool-raftbytes"
}

job "print" {
  step "print" {
    script = <<-EOT
      `+printScript(8<<20)+`
    EOT
  }
}
`)
	raftDir := filepath.Join(s.DataDir(), "raft")
	u := sampleUsage(filepath.Join(raftDir, "raft.db"), nil)
	// Each job's log is 4 MiB, most of it sent once the job is over.
	var ids []string
	for range 24 {
		ids = append(ids, runDetached(t, s, "-file", project, "print"))
	}
	for _, id := range ids {
		if j := waitJobFor(t, s, id, 5*time.Minute); j.Status != rpc.JobSucceeded {
			t.Fatalf("job %s ended %s (%s)", id, j.Status, j.StatusReason)
		}
	}
	u.end()
	t.Logf("raft.db peaked at %.1f MiB", float64(u.peakDir)/(1<<20))
	if u.peakDir > 64<<20 {
		t.Errorf("raft.db reached %d MiB with 1 MiB between snapshots and 1 MiB behind them, for ~100 MiB of logs", u.peakDir>>20)
	}
}

// waitJobFor waits up to timeout for a job to finish.
func waitJobFor(t *testing.T, s *testcluster.Server, id string, timeout time.Duration) *pb.Job {
	t.Helper()
	var job *pb.Job
	testcluster.WaitFor(t, timeout, func() (bool, string) {
		j, err := getJob(t.Context(), s, id)
		if err != nil {
			return false, err.Error()
		}
		job = j
		return rpc.JobTerminal(j.Status), fmt.Sprintf("job %s is %s (%s)", id, j.Status, j.StatusReason)
	})
	return job
}
