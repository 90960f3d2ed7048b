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
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/rpc"

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
		if got := a.f.State().CountJobs(state.JobFilter{Status: rpc.JobSucceeded, Project: "web"}); got != n {
			b.Fatalf("%d jobs succeeded, want %d", got, n)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "count-ms/100k")
		runtime.KeepAlive(a)
	}
}

// BenchmarkJobLifecycle applies what the servers commit for noop jobs
// under load, per job: a submit entry of two jobs, an assignment entry
// of eight, and report entries each holding four jobs' start and result,
// roughly the batch sizes make bench's throughput scenario sees. Every
// server applies all of it, so this is the FSM's share of a job's CPU.
func BenchmarkJobLifecycle(b *testing.B) {
	const round = 8
	a := newApplierNoT()
	encode := func(t MessageType, m proto.Message) []byte {
		data, err := Encode(t, m)
		if err != nil {
			b.Fatal(err)
		}
		return data
	}
	apply := func(data []byte) any {
		a.index++
		return a.f.Apply(&raft.Log{Index: a.index, Type: raft.LogCommand, Data: data})
	}
	apply(encode(UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: &pb.Runner{Id: "r-1", Name: "edge-1", Capacity: validate.MaxCapacity, Status: "adopted", State: "ready", FirstSeen: ts(0)}}))
	n := 0
	for b.Loop() {
		b.StopTimer()
		var submits [][]byte
		var jobs []*pb.Job
		var as []*pb.Assignment
		for k := 0; k < round; k += 2 {
			pair := []*pb.Job{job(fmt.Sprintf("01JQ%022d", n+k)), job(fmt.Sprintf("01JQ%022d", n+k+1))}
			jobs = append(jobs, pair...)
			submits = append(submits, encode(SubmitJobsType, &pb.SubmitJobsEntry{Jobs: pair}))
		}
		for _, j := range jobs {
			as = append(as, &pb.Assignment{JobId: j.Id, RunnerId: "r-1"})
		}
		assign := encode(AssignJobsType, &pb.AssignJobsEntry{Time: ts(1), Assignments: as})
		b.StartTimer()
		for _, s := range submits {
			apply(s)
		}
		apply(assign)
		b.StopTimer()
		lease := a.index
		var reports [][]byte
		for k := 0; k < round; k += 4 {
			var rs []*pb.RunnerMessage
			for _, j := range jobs[k : k+4] {
				rs = append(rs,
					&pb.RunnerMessage{Msg: &pb.RunnerMessage_Started{Started: &pb.JobStarted{JobId: j.Id, Lease: lease, Time: ts(2)}}},
					&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: &pb.JobFinished{JobId: j.Id, Lease: lease, Outcome: "succeeded", Time: ts(3),
						Lines: []*pb.LogLine{{Time: ts(3), Stream: "system", Step: "build", Text: "step build: make (noop driver, not run)"}}}}})
			}
			reports = append(reports, encode(RunnerReportsType, &pb.RunnerReportsEntry{RunnerId: "r-1", Reports: rs, Time: ts(3)}))
		}
		b.StartTimer()
		for _, r := range reports {
			if res, ok := apply(r).(*ReportsResult); !ok || len(res.Errors) != 8 || res.Errors[0] != nil || res.Errors[7] != nil {
				b.Fatalf("reports: %+v", res)
			}
		}
		n += round
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/job")
	b.ReportMetric(0, "ns/op")
}
