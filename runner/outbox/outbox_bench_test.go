package outbox

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// BenchmarkOutboxPut measures durable Puts from many goroutines at once, as
// a runner with many concurrent jobs finishing does. ns/op is wall time per
// Put across all goroutines, so it falls as commits are shared. goroutines
// is the number of concurrent writers; 64 is a runner running 64 jobs.
func BenchmarkOutboxPut(b *testing.B) {
	for _, par := range []int{1, 4, 32} {
		// RunParallel starts par*GOMAXPROCS goroutines.
		b.Run(fmt.Sprintf("goroutines=%d", par*benchProcs()), func(b *testing.B) {
			o, err := Open(filepath.Join(b.TempDir(), "outbox.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			lines := []*pb.LogLine{{Text: "a last line of output that rode with the result"}}
			var n atomic.Uint64
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(p *testing.PB) {
				for p.Next() {
					i := n.Add(1)
					if err := o.Put(&pb.JobFinished{JobId: fmt.Sprintf("j-%016x", i), Lease: i, Outcome: "succeeded", Lines: lines}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkOutboxPutDelete is a job's whole life in the outbox: the result
// is stored, then acknowledged and deleted.
func BenchmarkOutboxPutDelete(b *testing.B) {
	o, err := Open(filepath.Join(b.TempDir(), "outbox.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	var n atomic.Uint64
	b.SetParallelism(max(1, 64/benchProcs()))
	b.ResetTimer()
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			i := n.Add(1)
			id := fmt.Sprintf("j-%016x", i)
			if err := o.Put(&pb.JobFinished{JobId: id, Lease: i, Outcome: "succeeded"}); err != nil {
				b.Error(err)
				return
			}
			if err := o.Delete(id, i); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchProcs() int { return runtime.GOMAXPROCS(0) }
