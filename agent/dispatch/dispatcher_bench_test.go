package dispatch

import (
	"fmt"
	"testing"
)

// BenchmarkPass measures one dispatch pass over 10,000 pending jobs and 200
// runners of 20 label sets, all of which end up assigned.
func BenchmarkPass(b *testing.B) {
	t := &testing.T{}
	for b.Loop() {
		b.StopTimer()
		w := newWorld(t)
		for i := range 200 {
			w.runner(fmt.Sprintf("r-%d", i), 50, map[string]string{"env": fmt.Sprint(i % 4), "zone": fmt.Sprint(i % 5)}, "adopted")
		}
		for e := range 4 {
			w.submit(2500, map[string]string{"env": fmt.Sprint(e)})
		}
		b.StartTimer()
		w.pass()
	}
	b.ReportMetric(10000, "jobs/pass")
}
