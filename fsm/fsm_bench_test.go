package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm/state"

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

// BenchmarkFinishedJobHeap runs 100,000 jobs through their whole life
// (submit, assign, started and finished reports, in batches as the servers
// commit them) and reports the live heap each finished job costs: the
// figure behind a server's RSS with a long history.
func BenchmarkFinishedJobHeap(b *testing.B) {
	const n, batch = 102400, 256
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		a := newApplierNoT()
		apply := func(t MessageType, m proto.Message) any {
			data, err := Encode(t, m)
			if err != nil {
				b.Fatal(err)
			}
			a.index++
			return a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data})
		}
		apply(UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Name: "edge-1", Capacity: batch, Status: "adopted", State: "ready", FirstSeen: ts(0)}})
		for i := 0; i < n; i += batch {
			var jobs []*pb.Job
			var as []*pb.Assignment
			for k := i; k < i+batch; k++ {
				id := fmt.Sprintf("01JQ%022d", k)
				jobs = append(jobs, job(id))
				as = append(as, &pb.Assignment{JobId: id, RunnerId: "r-1"})
			}
			apply(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: jobs})
			apply(AssignJobsType, &pb.AssignJobsEntry{Time: ts(1), Assignments: as})
			lease := a.index
			var reports []*pb.RunnerMessage
			for _, j := range jobs {
				reports = append(reports,
					&pb.RunnerMessage{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: j.Id, Lease: lease, Time: ts(2)}}},
					&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: j.Id, Lease: lease, Outcome: "succeeded", Time: ts(3),
						// What the noop driver logs for its one step.
						Lines: []*pb.LogLine{{Time: ts(3), Stream: "system", Step: "build", Text: "step build: make (noop driver, not run)"}}}}})
			}
			apply(RunnerReportsType, &pb.RunnerReportsEntry{RunnerId: "r-1", Reports: reports, Time: ts(3)})
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/job")
		// Listing a project's history scans it without an index.
		start := time.Now()
		if got := a.f.State().CountJobs(state.JobFilter{Status: state.StatusSucceeded, Project: "web"}); got != n {
			b.Fatalf("%d jobs succeeded, want %d", got, n)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "count-ms/100k")
		runtime.KeepAlive(a)
	}
}
