package bench

import (
	"fmt"
	"testing"
)

// tlsCost is the tls scenario: what TLS costs, measured in one run on
// two clusters of the same shape (3 servers, sz.Runners runners), one
// with TLS everywhere as production runs and one with -insecure-no-tls:
// noop throughput and pickup latency at the lowest rate of
// sz.LatencyRates (100 jobs/s in the full run: one the cluster sustains,
// so the latency is TLS's and not a queue's), printed side by side.
func tlsCost(r *Report, t *testing.T, sz Sizes) {
	rate := sz.LatencyRates[0]
	runs := map[bool]*Report{}
	for _, insecure := range []bool{false, true} {
		name := map[bool]string{false: "with-tls", true: "insecure-no-tls"}[insecure]
		t.Run(name, func(t *testing.T) {
			sub := newReport(sz.Mode)
			e := startEnvTLS(t, sz, "", insecure)
			e.throughputAs(sub, sz, "noop", "noop")
			e.pickup(sub, rate, sz.LatencyDuration)
			runs[insecure] = sub
		})
	}
	on, off := runs[false], runs[true]
	if on == nil || off == nil {
		return
	}
	pickup := fmt.Sprintf("pickup/%d-per-s", rate)
	for _, f := range []struct{ scenario, metric, label string }{
		{"noop", "end-to-end", "noop throughput"},
		{"noop", "cpu servers", "noop cpu servers"},
		{"noop", "cpu runners", "noop cpu runners"},
		{pickup, "p50", fmt.Sprintf("pickup p50 at %d/s", rate)},
		{pickup, "p99", fmt.Sprintf("pickup p99 at %d/s", rate)},
	} {
		a, unit := on.value(f.scenario, f.metric)
		b, _ := off.value(f.scenario, f.metric)
		note := fmt.Sprintf("without TLS %s %s", formatValue(b), unit)
		if b != 0 {
			note += fmt.Sprintf(" (TLS %+.0f%%)", (a/b-1)*100)
		}
		r.add("tls", f.label, a, unit, note)
	}
}

// value is a metric's value and unit, 0 and "" when absent.
func (r *Report) value(scenario, name string) (float64, string) {
	for _, m := range r.Metrics {
		if m.Scenario == scenario && m.Name == name {
			return m.Value, m.Unit
		}
	}
	return 0, ""
}
