package fsm

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// BenchmarkApplySubmit measures applying one single-job submit entry, the
// most common entry.
func BenchmarkApplySubmit(b *testing.B) {
	a := newApplierNoT()
	for i := 0; b.Loop(); i++ {
		data, _ := Encode(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: []*pb.Job{job(fmt.Sprintf("j-%d", i))}})
		a.index++
		if res := a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data}); res != nil {
			b.Fatal(res)
		}
	}
}

// BenchmarkSnapshot100k measures persisting and restoring a state of
// 100,000 finished jobs.
func BenchmarkSnapshot100k(b *testing.B) {
	a := newApplierNoT()
	var jobs []*pb.Job
	for i := range 100000 {
		j := job(fmt.Sprintf("j-%d", i))
		jobs = append(jobs, j)
		if len(jobs) == 1000 {
			data, _ := Encode(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: jobs})
			a.index++
			a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data})
			jobs = nil
		}
	}
	var size int
	for b.Loop() {
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, a.f.State().Snapshot(), a.index); err != nil {
			b.Fatal(err)
		}
		size = buf.Len()
		if _, err := ReadSnapshot(&buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB/snapshot")
}
