package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's figures and verdict: printed as a table, written as
// JSON.
type Report struct {
	Seed          uint64        `json:"seed"`
	Duration      time.Duration `json:"duration_ns"`
	DurationText  string        `json:"duration"`
	RunnerTimeout string        `json:"runner_timeout"`
	// Network says how hosts were separated, or why they were not.
	Network   string    `json:"network"`
	NetworkOn bool      `json:"network_faults"`
	StartedAt time.Time `json:"started_at"`
	// T0 is CLOCK_MONOTONIC (ns) when the load began: the "+12.34s" times
	// of the examples count from it, and every mono time here shares it.
	T0 int64 `json:"t0_mono"`
	// Code is what the agents were built from.
	Code      string         `json:"code"`
	Servers   int            `json:"servers"`
	Runners   int            `json:"runners"`
	Submitted int            `json:"submitted"`
	Skipped   int            `json:"skipped_overload"`
	Attempts  int            `json:"submit_calls"`
	FailedBy  map[string]int `json:"failed_calls_by_code"`
	// Told is what failed calls said, numbers blanked, with how often.
	Told map[string]int `json:"failed_calls_by_message"`
	// FailedCalls are the failed submit calls themselves.
	FailedCalls []SubmitAttempt `json:"failed_calls"`
	Acked       int             `json:"acknowledged"`
	Abandoned   int             `json:"abandoned"`
	JobsBy      map[string]int  `json:"acknowledged_jobs_by_status"`
	Executions  int             `json:"executions"`
	ExecEnded   int             `json:"executions_ended"`
	ExecTermed  int             `json:"executions_stopped"`
	ExecKilled  int             `json:"executions_killed"`
	FaultsBy    map[string]int  `json:"faults_by_kind"`
	FaultsFail  int             `json:"faults_not_applied"`
	Checks      []*Check        `json:"checks"`
	Violations  int             `json:"violations"`
	// Notes are harness problems (a fault that could not be applied, a
	// process that would not restart), not findings about outpost.
	Notes []string `json:"notes,omitempty"`
	// Faults and Plan are the whole record, for replaying and reading.
	Faults []Fault   `json:"faults"`
	Plan   []Planned `json:"plan"`
	Kept   string    `json:"kept,omitempty"`
}

// Tally fills the figures from what the run gathered.
func (r *Report) Tally(in *Inputs, checks []*Check) {
	lr := in.Load
	r.T0 = in.T0
	r.Submitted, r.Skipped, r.Attempts = lr.Started, lr.Skipped, len(lr.Attempts)
	r.Acked, r.Abandoned = len(lr.Acked), len(lr.Abandoned)
	r.FailedBy, r.Told, r.FailedCalls = map[string]int{}, map[string]int{}, nil
	for _, a := range lr.Attempts {
		if a.Err != "" {
			r.FailedBy[a.Code]++
			r.Told[blankNumbers(a.Err)]++
			r.FailedCalls = append(r.FailedCalls, a)
		}
	}
	r.JobsBy = map[string]int{}
	ref := in.Jobs[in.Reference]
	for id := range lr.Acked {
		if j := ref[id]; j != nil {
			r.JobsBy[j.Status]++
		} else {
			r.JobsBy["missing"]++
		}
	}
	r.Executions = len(in.Executions)
	for _, e := range in.Executions {
		switch {
		case e.Ended():
			r.ExecEnded++
		case e.Termed:
			r.ExecTermed++
		default:
			r.ExecKilled++
		}
	}
	r.FaultsBy = map[string]int{}
	for _, f := range in.Faults {
		if f.Err != "" {
			r.FaultsFail++
			continue
		}
		r.FaultsBy[f.Kind]++
	}
	r.Faults = in.Faults
	r.Checks = checks
	r.Violations = 0
	for _, c := range checks {
		r.Violations += c.Count
	}
}

// Print writes the table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\n==== chaos run: seed %d, %v of load and faults, runner_timeout %s\n", r.Seed, r.Duration, r.RunnerTimeout)
	fmt.Fprintf(w, "code: %s\n", r.Code)
	fmt.Fprintf(w, "network: %s\n", r.Network)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ops\t\n")
	fmt.Fprintf(tw, "  submitted (ids)\t%d\n", r.Submitted)
	if r.Skipped > 0 {
		fmt.Fprintf(tw, "  not started (too many in flight)\t%d\n", r.Skipped)
	}
	fmt.Fprintf(tw, "  submit calls\t%d\n", r.Attempts)
	for _, code := range slices.Sorted(maps.Keys(r.FailedBy)) {
		fmt.Fprintf(tw, "    failed: %s\t%d\n", code, r.FailedBy[code])
	}
	fmt.Fprintf(tw, "  acknowledged\t%d\n", r.Acked)
	fmt.Fprintf(tw, "  abandoned (never acknowledged)\t%d\n", r.Abandoned)
	for _, st := range slices.Sorted(maps.Keys(r.JobsBy)) {
		fmt.Fprintf(tw, "    acknowledged, now %s\t%d\n", st, r.JobsBy[st])
	}
	fmt.Fprintf(tw, "  executions (markers)\t%d\n", r.Executions)
	fmt.Fprintf(tw, "    ran to the end\t%d\n", r.ExecEnded)
	fmt.Fprintf(tw, "    stopped by SIGTERM\t%d\n", r.ExecTermed)
	fmt.Fprintf(tw, "    killed\t%d\n", r.ExecKilled)
	fmt.Fprintf(tw, "faults by kind\t\n")
	total := 0
	for _, k := range slices.Sorted(maps.Keys(r.FaultsBy)) {
		fmt.Fprintf(tw, "  %s\t%d\n", k, r.FaultsBy[k])
		total += r.FaultsBy[k]
	}
	fmt.Fprintf(tw, "  total\t%d\n", total)
	if r.FaultsFail > 0 {
		fmt.Fprintf(tw, "  not applied (see notes)\t%d\n", r.FaultsFail)
	}
	fmt.Fprintf(tw, "violations by check\t\n")
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "  %2d %s\t%d\n", c.N, c.Name, c.Count)
	}
	fmt.Fprintf(tw, "  total\t%d\n", r.Violations)
	tw.Flush()
	if len(r.Told) > 0 {
		fmt.Fprintf(w, "failed submit calls said (numbers blanked):\n")
		for _, msg := range slices.Sorted(maps.Keys(r.Told)) {
			fmt.Fprintf(w, "  %4d x %s\n", r.Told[msg], truncate(msg, 200))
		}
	}
	for _, c := range r.Checks {
		if c.Note != "" {
			fmt.Fprintf(w, "check %d (%s): %s\n", c.N, c.Name, c.Note)
		}
		if c.Count == 0 {
			continue
		}
		fmt.Fprintf(w, "check %d %s: %s; %d violations, first %d:\n", c.N, c.Name, c.What, c.Count, len(c.Examples))
		for _, ex := range c.Examples {
			fmt.Fprintf(w, "    %s\n", ex)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "harness note: %s\n", n)
	}
	if r.Kept != "" {
		fmt.Fprintf(w, "kept: %s\n", r.Kept)
	}
	fmt.Fprintf(w, "replay: CHAOS_SEED=%d CHAOS_TIME=%s make chaos\n", r.Seed, r.DurationText)
	verdict := "PASS: no violations"
	if r.Violations > 0 {
		verdict = fmt.Sprintf("FAIL: %d violations in %s", r.Violations, strings.Join(r.failed(), ", "))
	}
	fmt.Fprintf(w, "==== %s (seed %d)\n\n", verdict, r.Seed)
}

func (r *Report) failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Count > 0 {
			out = append(out, fmt.Sprintf("%d %s (%d)", c.N, c.Name, c.Count))
		}
	}
	return out
}

var numbersRE = regexp.MustCompile(`j-[0-9a-f]{16}|[0-9]+`)

// blankNumbers makes messages that differ only in ids, ports and counts
// one message.
func blankNumbers(s string) string { return numbersRE.ReplaceAllString(s, "#") }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Write saves the report as JSON.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
