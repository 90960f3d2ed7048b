package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// TestBench runs the suite. OUTPOST_BENCH=full (make bench) runs it at the
// issue's sizes and writes bench-results/<time>.json (or
// OUTPOST_BENCH_OUT); otherwise a smoke pass checks every scenario works.
// Nothing here asserts a timing.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters and runners")
	}
	sz := Smoke
	if os.Getenv("OUTPOST_BENCH") == "full" {
		sz = Full
	}
	r := newReport(sz.Mode)
	defer func() {
		r.Print(os.Stdout)
		if sz.Mode != "full" {
			return
		}
		out := os.Getenv("OUTPOST_BENCH_OUT")
		if out == "" {
			dir := filepath.Join(testcluster.RepoRoot(t), "bench-results")
			_ = os.MkdirAll(dir, 0o755)
			out = filepath.Join(dir, time.Now().UTC().Format("20060102T150405Z")+".json")
		}
		if err := r.Write(out); err != nil {
			t.Errorf("writing report: %v", err)
		} else {
			t.Logf("report written to %s", out)
		}
	}()

	// OUTPOST_BENCH_ONLY=throughput,pickup,failover,memory,scale,gossip,
	// retention, biglog, tls runs a subset.
	only := os.Getenv("OUTPOST_BENCH_ONLY")
	want := func(name string) bool { return only == "" || strings.Contains(","+only+",", ","+name+",") }
	if want("throughput") || want("throughput-noop") || want("pickup") || want("failover") || want("memory") {
		t.Run("cluster", func(t *testing.T) {
			e := startEnv(t, sz)
			if want("throughput") {
				e.throughput(r, sz, "")
			}
			if want("throughput") || want("throughput-noop") {
				e.throughput(r, sz, "noop")
			}
			if want("pickup") {
				for _, rate := range sz.LatencyRates {
					e.pickup(r, rate, sz.LatencyDuration)
				}
			}
			if want("memory") {
				e.memory(r)
			}
			if want("failover") {
				e.failover(r, sz.FailoverRate)
			}
		})
	}
	if want("scale") {
		t.Run("scale", func(t *testing.T) {
			e := startEnv(t, Sizes{Mode: sz.Mode, Runners: 0})
			e.scale(r, sz)
			e.memory(r)
		})
	}
	if want("retention") {
		t.Run("retention", func(t *testing.T) {
			e := startEnvWith(t, sz, retentionConfig(sz.RetentionMax))
			e.retention(r, sz)
		})
	}
	if want("biglog") {
		// A cluster of its own: its servers' Raft directories and memory
		// are measured from a fresh start.
		t.Run("biglog", func(t *testing.T) {
			e := startEnv(t, Sizes{Mode: sz.Mode, Runners: 2, RunnerCapacity: 8})
			e.bigLog(r, sz.BigLogBytes)
		})
	}
	if want("gossip") {
		t.Run("gossip", func(t *testing.T) { gossip(r, t, sz.GossipMembers) })
	}
	if want("tls") {
		t.Run("tls", func(t *testing.T) { tlsCost(r, t, sz) })
	}
}
