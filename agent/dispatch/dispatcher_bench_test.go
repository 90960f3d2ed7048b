package dispatch

import (
	"context"
	"fmt"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
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

// BenchmarkPassManyRunners measures the pass the scale benchmark makes
// over and over: 2,000 runners of 20 label sets, a dozen new jobs each
// time. What it costs is mostly per runner, not per job.
func BenchmarkPassManyRunners(b *testing.B) {
	t := &testing.T{}
	w := newWorld(t)
	for i := range 2000 {
		w.runner(fmt.Sprintf("r-%d", i), 2, map[string]string{"env": fmt.Sprint(i % 4), "zone": fmt.Sprint(i % 5)}, "adopted")
	}
	for b.Loop() {
		b.StopTimer()
		for e := range 4 {
			w.submit(3, map[string]string{"env": fmt.Sprint(e)})
		}
		w.d.lastReasons = time.Now()
		b.StartTimer()
		if _, err := w.d.pass(context.Background(), memdb.NewWatchSet()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		w.finishAll()
		b.StartTimer()
	}
}
