package chaos

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Check is one property the run must have, and what broke it.
type Check struct {
	N     int    `json:"n"`
	Name  string `json:"name"`
	What  string `json:"what"`
	Count int    `json:"violations"`
	// Examples are the first few violations, each naming its job.
	Examples []string `json:"examples,omitempty"`
	// Note qualifies the result (what was not checked, and why).
	Note string `json:"note,omitempty"`
}

// maxExamples is how many violations of one check the report spells out.
const maxExamples = 5

func (c *Check) add(format string, args ...any) {
	c.Count++
	if len(c.Examples) < maxExamples {
		c.Examples = append(c.Examples, fmt.Sprintf(format, args...))
	}
}

// Inputs is everything the checks look at, gathered after the run healed
// and settled.
type Inputs struct {
	// T0 is CLOCK_MONOTONIC at the start of the load: times in messages
	// are seconds from it.
	T0 int64
	// Settle is how long after an execution's end its runner must have
	// stayed unfaulted for its result to be owed (check 6).
	Settle time.Duration
	Load   LoadResult
	Faults []Fault
	// Executions are the markers' account; MarkerProblems its bad lines.
	Executions     []*Execution
	MarkerProblems []string
	// Jobs holds each server's jobs by id (stale reads once every server
	// applied the same index); Reference names the server whose view is
	// the final word for checks 5, 6 and 8 (the leader).
	Jobs      map[string]map[string]*pb.Job
	Servers   []string
	Reference string
	// RunnerName and RunnerPool map a runner id to its name and to its
	// pool label; JobPool a job name to the pool it targets.
	RunnerName, RunnerPool map[string]string
	JobPool                map[string]string
	// Logs holds each agent's whole log by process name.
	Logs map[string]string
	// Network says whether network faults ran (check 9 needs them).
	Network bool
}

func (in *Inputs) secs(mono int64) string {
	return fmt.Sprintf("+%.2fs", float64(mono-in.T0)/1e9)
}

func (in *Inputs) runnerName(id string) string {
	if n := in.RunnerName[id]; n != "" {
		return n
	}
	return id
}

func (in *Inputs) execString(e *Execution) string {
	end := "killed, last alive " + in.secs(e.Last)
	switch {
	case e.Ended():
		end = "ended " + in.secs(e.End)
	case e.Termed:
		end = "stopped by SIGTERM " + in.secs(e.Last)
	}
	lease := ""
	if e.Lease != 0 {
		lease = fmt.Sprintf(" lease %d", e.Lease)
	}
	return fmt.Sprintf("attempt %d%s on %s from %s, %s", e.Attempt, lease, in.runnerName(e.Runner), in.secs(e.Start), end)
}

func (in *Inputs) jobString(j *pb.Job) string {
	if j == nil {
		return "absent"
	}
	on := "no runner"
	if j.RunnerId != "" {
		on = in.runnerName(j.RunnerId)
	}
	return fmt.Sprintf("%s attempt %d lease %d exit %d on %s (%s)", j.Status, j.Attempt, j.Lease, j.ExitCode, on, j.StatusReason)
}

// RunChecks evaluates every check, in the order of the issue.
func RunChecks(in *Inputs) []*Check {
	ref := in.Jobs[in.Reference]
	byJob := map[string][]*Execution{}
	for _, e := range in.Executions {
		byJob[e.Job] = append(byJob[e.Job], e)
	}
	acked := slices.Sorted(maps.Keys(in.Load.Acked))

	c1 := &Check{N: 1, Name: "acked-present", What: "every acknowledged job is on every server"}
	for _, id := range acked {
		for _, s := range in.Servers {
			if in.Jobs[s][id] == nil {
				c1.add("%s: acknowledged by %s at %s, missing on %s", id, in.Load.Acked[id].Server, in.secs(in.Load.Acked[id].EndMono), s)
			}
		}
	}

	c2 := &Check{N: 2, Name: "servers-agree", What: "all servers hold the same status, attempt, lease, exit code and runner for every job"}
	all := map[string]bool{}
	for _, s := range in.Servers {
		for id := range in.Jobs[s] {
			all[id] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(all)) {
		var base *pb.Job
		baseOn := ""
		for _, s := range append([]string{in.Reference}, in.Servers...) {
			if j := in.Jobs[s][id]; j != nil {
				base, baseOn = j, s
				break
			}
		}
		for _, s := range in.Servers {
			j := in.Jobs[s][id]
			if j == nil {
				if !in.isAcked(id) { // acknowledged ones are check 1's
					c2.add("%s: on %s (%s), absent on %s", id, baseOn, in.jobString(base), s)
				}
				continue
			}
			if j.Status != base.Status || j.Attempt != base.Attempt || j.Lease != base.Lease || j.ExitCode != base.ExitCode || j.RunnerId != base.RunnerId {
				c2.add("%s: %s has %s; %s has %s", id, baseOn, in.jobString(base), s, in.jobString(j))
			}
		}
	}

	c3 := &Check{N: 3, Name: "no-overlap", What: "no two executions of one job are alive at once (flock, and [start, last sign of life] intervals)"}
	c4 := &Check{N: 4, Name: "attempt-order", What: "no attempt starts after a later attempt of its job has started"}
	c5 := &Check{N: 5, Name: "runs-within-attempts", What: "a job runs at most once per attempt, and no more times than its final attempt number"}
	c7 := &Check{N: 7, Name: "right-pool", What: "every execution ran on a runner of the job's pool"}
	for _, id := range slices.Sorted(maps.Keys(byJob)) {
		execs := byJob[id]
		for i, a := range execs {
			if a.Lock == "busy" {
				c3.add("%s: %s started while another execution held the job's lock; all: %s", id, in.execString(a), in.execsString(execs))
			}
			for _, b := range execs[i+1:] {
				// execs are ordered by start: b started after a.
				if b.Start < a.Last && b.Lock != "busy" {
					c3.add("%s: %s overlaps %s", id, in.execString(a), in.execString(b))
				}
				if a.Attempt > b.Attempt {
					c4.add("%s: %s started after %s had", id, in.execString(b), in.execString(a))
				}
			}
		}
		j := ref[id]
		seen := map[int]int{}
		for _, e := range execs {
			seen[e.Attempt]++
		}
		for _, att := range slices.Sorted(maps.Keys(seen)) {
			if seen[att] > 1 {
				c5.add("%s: attempt %d ran %d times: %s", id, att, seen[att], in.execsString(execs))
			}
		}
		switch {
		case j == nil:
			c5.add("%s: ran %d times, but %s has no such job: %s", id, len(execs), in.Reference, in.execsString(execs))
		case len(execs) > int(j.Attempt):
			c5.add("%s: ran %d times, final attempt is %d (%s): %s", id, len(execs), j.Attempt, in.jobString(j), in.execsString(execs))
		}
		for _, e := range execs {
			want := ""
			if j != nil {
				want = in.JobPool[j.Name]
			} else {
				want = in.JobPool[in.Load.JobOf[id]]
			}
			got, known := in.RunnerPool[e.Runner]
			if !known || got != want {
				c7.add("%s: %s, a runner of pool %q; the job targets pool %q", id, in.execString(e), got, want)
			}
		}
	}

	c6 := &Check{N: 6, Name: "result-delivered", What: fmt.Sprintf("an execution that ended on a runner with no fault from its start until %v after its end is the job's result", in.Settle)}
	for _, e := range in.Executions {
		if !e.Ended() || in.runnerFaulted(in.runnerName(e.Runner), e.Start, e.End+int64(in.Settle)) {
			continue
		}
		j := ref[e.Job]
		if j != nil && j.Status == rpc.JobSucceeded && int(j.Attempt) == e.Attempt && j.RunnerId == e.Runner && (e.Lease == 0 || e.Lease == j.Lease) {
			continue
		}
		c6.add("%s: %s, runner unfaulted; the job is %s", e.Job, in.execString(e), in.jobString(j))
	}

	c8 := &Check{N: 8, Name: "all-terminal", What: "no acknowledged job is left non-terminal"}
	for _, id := range acked {
		if j := ref[id]; j != nil && !rpc.JobTerminal(j.Status) {
			c8.add("%s: %s", id, in.jobString(j))
		}
	}

	c9 := &Check{N: 9, Name: "no-minority-ack", What: "no server cut off from the majority for a whole submit call acknowledges it"}
	if !in.Network {
		c9.Note = "no network faults in this run: nothing to check"
	}
	for _, id := range acked {
		a := in.Load.Acked[id]
		f := in.isolatedDuring(a)
		if f == nil {
			continue
		}
		// A retry may be answered from a job an earlier call committed;
		// only when every call of this id went to a cut-off server can the
		// acknowledgment not stand for a commit by a majority.
		alone := true
		for _, b := range in.Load.Attempts {
			if b.ID == id && b.StartMono < a.EndMono && in.isolatedDuring(&b) == nil {
				alone = false
				break
			}
		}
		if alone {
			c9.add("%s: acknowledged by %s, call %s..%s, while %s was cut off (%s %s..%s)", id, a.Server, in.secs(a.StartMono), in.secs(a.EndMono), a.Server, f.Kind, in.secs(f.Applied), in.secs(f.Healing))
		}
	}

	c10 := &Check{N: 10, Name: "no-panic", What: `no "panic:", "fatal error:" or "DATA RACE" in any agent log`}
	for _, name := range slices.Sorted(maps.Keys(in.Logs)) {
		for _, line := range panicRE.FindAllString(in.Logs[name], -1) {
			c10.add("%s: %s", name, strings.TrimSpace(line))
		}
	}
	return []*Check{c1, c2, c3, c4, c5, c6, c7, c8, c9, c10}
}

var panicRE = regexp.MustCompile(`(?m)^.*(panic:|fatal error:|DATA RACE).*$`)

func (in *Inputs) isAcked(id string) bool { _, ok := in.Load.Acked[id]; return ok }

func (in *Inputs) execsString(execs []*Execution) string {
	var parts []string
	for _, e := range execs {
		parts = append(parts, in.execString(e))
	}
	return strings.Join(parts, "; ")
}

// runnerFaulted reports whether a fault touched the runner named name
// during [from, to]: from the moment its application began until its
// healing was done.
func (in *Inputs) runnerFaulted(name string, from, to int64) bool {
	for _, f := range in.Faults {
		if f.Err != "" || !slices.Contains(f.Runners, name) {
			continue
		}
		end := f.Healed
		if end == 0 {
			end = 1<<63 - 1
		}
		if f.Begin <= to && end >= from {
			return true
		}
	}
	return false
}

// isolatedDuring returns the cut that kept a's server from the majority for
// the whole of the call: in force before the call began and until after
// its answer came.
func (in *Inputs) isolatedDuring(a *SubmitAttempt) *Fault {
	for i := range in.Faults {
		f := &in.Faults[i]
		if f.Err != "" || !slices.Contains(f.Isolated, a.Server) {
			continue
		}
		end := f.Healing
		if end == 0 {
			end = 1<<63 - 1
		}
		if f.Applied <= a.StartMono && a.EndMono <= end {
			return f
		}
	}
	return nil
}
