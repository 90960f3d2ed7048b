package chaos

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The marker program is what every chaos job runs: the test binary itself,
// started by a runner with MarkerEnv set (TestMain checks it before
// anything else). It writes down, outside outpost, that this execution
// ran, where, and from when to when, so the checks need not take the
// servers' word for it.
//
// Per execution it:
//   - takes an exclusive, non-blocking flock on locks/<job>.lock. The
//     kernel drops the lock when the process ends, however it ends (a
//     SIGKILL too), so failing to get it means another execution of the
//     same job is alive at this moment: an overlap, caught exactly. It
//     notes that and goes on, so the other checks still see both;
//   - appends a "start" line, a "tick" line every tickEvery while it
//     works (a killed execution's last tick bounds when it died), and an
//     "end" line, then exits 0. A SIGTERM (the runner stopping the job)
//     writes "term" and exits 143, as a shell would;
//   - writes each line with one write(2) on a file opened O_APPEND, so
//     lines of concurrent executions never interleave.
//
// Times are CLOCK_MONOTONIC nanoseconds: every namespace of the run shares
// it with the test process, which stamps faults and submits with it too,
// and it never jumps.

const (
	// MarkerEnv names the directory markers write to; set in the chaos
	// jobs' env, it makes the test binary act as the marker.
	MarkerEnv = "OUTPOST_CHAOS_MARKER"
	// workEnv is how long the execution works, in milliseconds.
	workEnv = "CHAOS_WORK_MS"
	// markerFile holds every line of every execution.
	markerFile = "markers.log"
	tickEvery  = 50 * time.Millisecond
)

// Mono is CLOCK_MONOTONIC in nanoseconds, the clock of every timestamp the
// checks compare.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return ts.Nano()
}

// MarkerMain runs the marker program and returns its exit code.
func MarkerMain() int {
	dir := os.Getenv(MarkerEnv)
	job := os.Getenv("OUTPOST_JOB_ID")
	if job == "" {
		fmt.Fprintln(os.Stderr, "chaos marker: OUTPOST_JOB_ID is not set")
		return 2
	}
	ms, err := strconv.Atoi(os.Getenv(workEnv))
	if err != nil || ms < 0 {
		ms = 500
	}
	f, err := os.OpenFile(filepath.Join(dir, markerFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos marker:", err)
		return 2
	}
	var xb [6]byte
	_, _ = rand.Read(xb[:])
	x := hex.EncodeToString(xb[:])
	id := fmt.Sprintf("x=%s job=%s attempt=%s lease=%s runner=%s pid=%d",
		x, job, orDash(os.Getenv("OUTPOST_ATTEMPT")), orDash(os.Getenv("OUTPOST_LEASE")), orDash(os.Getenv("OUTPOST_RUNNER_ID")), os.Getpid())
	write := func(event, extra string) {
		line := event + " " + id + " mono=" + strconv.FormatInt(Mono(), 10) + extra + "\n"
		// One write(2) per line: with O_APPEND the kernel places it whole.
		_, _ = f.Write([]byte(line))
	}

	lock := " lock=ok"
	lf, err := os.OpenFile(filepath.Join(dir, "locks", job+".lock"), os.O_RDWR|os.O_CREATE, 0o666)
	switch {
	case err != nil:
		lock = " lock=error:" + strings.ReplaceAll(err.Error(), " ", "_")
	default:
		// Held until the process ends; the descriptor stays open for it.
		if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				lock = " lock=busy"
			} else {
				lock = " lock=error:" + strings.ReplaceAll(err.Error(), " ", "_")
			}
		}
	}
	// The lock lives as long as the descriptor: keep the file from being
	// collected (its finalizer would close it) before the process ends.
	defer runtime.KeepAlive(lf)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	write("start", lock+" ms="+strconv.Itoa(ms))
	fmt.Printf("chaos marker %s: attempt %s on %s, working %d ms\n", x, os.Getenv("OUTPOST_ATTEMPT"), os.Getenv("OUTPOST_RUNNER_ID"), ms)

	done := time.After(time.Duration(ms) * time.Millisecond)
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			write("tick", "")
		case sig := <-term:
			write("term", " signal="+sig.String())
			return 143
		case <-done:
			write("end", "")
			fmt.Printf("chaos marker %s: done\n", x)
			return 0
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Execution is one run of the marker, as its lines tell it.
type Execution struct {
	X       string `json:"x"`
	Job     string `json:"job"`
	Attempt int    `json:"attempt"`
	// Lease is 0 when the runner did not pass OUTPOST_LEASE.
	Lease  uint64 `json:"lease,omitempty"`
	Runner string `json:"runner"`
	Pid    int    `json:"pid"`
	// Start and Last are CLOCK_MONOTONIC ns: the start line, and the last
	// line of any kind (tick, end, term): the execution was alive over
	// [Start, Last] at least.
	Start int64 `json:"start"`
	Last  int64 `json:"last"`
	// End is the end line's time; 0 if it never wrote one (killed, or
	// stopped by the runner: Termed).
	End      int64  `json:"end,omitempty"`
	Termed   bool   `json:"termed,omitempty"`
	Lock     string `json:"lock"`
	WorkMS   int    `json:"work_ms"`
	Problems string `json:"problems,omitempty"`
}

// Ended reports whether the execution ran to its end.
func (e *Execution) Ended() bool { return e.End != 0 }

// ReadMarkers parses the marker file in dir into executions, ordered by
// start. Lines it cannot make sense of are returned as problems.
func ReadMarkers(dir string) ([]*Execution, []string, error) {
	f, err := os.Open(filepath.Join(dir, markerFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	byX := map[string]*Execution{}
	var problems []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			problems = append(problems, fmt.Sprintf("line %d: %q", n, sc.Text()))
			continue
		}
		kv := map[string]string{}
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		mono, err := strconv.ParseInt(kv["mono"], 10, 64)
		if err != nil || kv["x"] == "" {
			problems = append(problems, fmt.Sprintf("line %d: %q", n, sc.Text()))
			continue
		}
		e := byX[kv["x"]]
		if e == nil {
			e = &Execution{X: kv["x"], Job: kv["job"], Runner: kv["runner"], Start: mono}
			e.Attempt, _ = strconv.Atoi(kv["attempt"])
			e.Lease, _ = strconv.ParseUint(kv["lease"], 10, 64)
			e.Pid, _ = strconv.Atoi(kv["pid"])
			byX[e.X] = e
		}
		switch fields[0] {
		case "start":
			e.Start = mono
			e.Lock = kv["lock"]
			e.WorkMS, _ = strconv.Atoi(kv["ms"])
		case "tick":
		case "end":
			e.End = mono
		case "term":
			e.Termed = true
		default:
			problems = append(problems, fmt.Sprintf("line %d: unknown event %q", n, fields[0]))
		}
		if mono > e.Last {
			e.Last = mono
		}
	}
	if err := sc.Err(); err != nil {
		return nil, problems, err
	}
	out := make([]*Execution, 0, len(byX))
	for _, e := range byX {
		if e.Lock == "" {
			e.Problems = "no start line"
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, problems, nil
}
