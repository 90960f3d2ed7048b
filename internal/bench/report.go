package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Metric is one figure of one scenario.
type Metric struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Note     string  `json:"note,omitempty"`
}

// Report is a whole run.
type Report struct {
	When      time.Time `json:"when"`
	Mode      string    `json:"mode"`
	Commit    string    `json:"commit"`
	GoVersion string    `json:"go_version"`
	Cores     int       `json:"cores"`
	CPU       string    `json:"cpu"`
	Kernel    string    `json:"kernel"`
	MemoryGiB float64   `json:"memory_gib"`
	Metrics   []Metric  `json:"metrics"`
}

func newReport(mode string) *Report {
	r := &Report{When: time.Now().UTC(), Mode: mode, GoVersion: runtime.Version(), Cores: runtime.NumCPU()}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				r.CPU = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%f", &kb)
		r.MemoryGiB = kb / (1 << 20)
	}
	return r
}

func (r *Report) add(scenario, name string, value float64, unit, note string) {
	r.Metrics = append(r.Metrics, Metric{Scenario: scenario, Name: name, Value: value, Unit: unit, Note: note})
}

// Print writes the table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "outpost benchmarks (%s) — commit %s, %s, %d cores (%s), %.0f GiB, kernel %s\n",
		r.Mode, r.Commit, r.GoVersion, r.Cores, r.CPU, r.MemoryGiB, r.Kernel)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmetric\tvalue\tunit\t")
	for _, m := range r.Metrics {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Scenario, m.Name, formatValue(m.Value), m.Unit, m.Note)
	}
	tw.Flush()
}

func formatValue(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// Write saves the JSON report.
func (r *Report) Write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
