package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// chattySource is a project whose "chatty" job prints size bytes as fast
// as it can, in numbered lines of about 1 KiB, and whose "small" job does
// nothing (and spawns nothing: the noop driver is the fast path whose
// pickup the chatty job might slow).
func chattySource(project string, size int64) []byte {
	return fmt.Appendf(nil, `project = %q
job "chatty" {
  step "print" {
    script = "yes \"$(head -c 1000 /dev/zero | tr '\\0' x)\" | head -c %d | awk '{print NR, $0}'"
  }
}
job "small" {
  step "t" { command = ["/bin/true"] }
}
`, project, size)
}

// bigLog runs a job printing size bytes as fast as it can next to a stream
// of small jobs (at least 100, at 20/s, for as long as it runs), and
// reports what it cost: each server's Raft directory growth and peak RSS
// while it ran, the stored log, and the small jobs' pickup latency, beside
// that of 100 small jobs alone before.
func (e *env) bigLog(r *Report, size int64) {
	const name = "biglog"
	project := fmt.Sprintf("big%d", e.seq.Add(1))
	src := chattySource(project, size)
	c := e.clients[0]
	// Pickup of small jobs on their own, to compare with.
	alone, _, _ := e.smallJobs(project, src, func() bool { return false })

	raftDir := func(s *testcluster.Server) string { return filepath.Join(s.DataDir(), "raft") }
	before := map[string]int64{}
	peakDir := map[string]int64{}
	peakRSS := map[string]float64{}
	var mu sync.Mutex
	sample := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range e.cluster.Servers {
			if s.Exited() {
				continue
			}
			peakDir[s.Name()] = max(peakDir[s.Name()], testcluster.DirSize(raftDir(s)))
			peakRSS[s.Name()] = max(peakRSS[s.Name()], rssMiB(s.Pid()))
		}
	}
	for _, s := range e.cluster.Servers {
		before[s.Name()] = testcluster.DirSize(raftDir(s))
	}
	stop := make(chan struct{})
	var samplers sync.WaitGroup
	samplers.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})

	start := time.Now()
	resp, err := c.Jobs.SubmitJob(context.Background(), connect.NewRequest(&pb.SubmitJobRequest{ProjectSource: src, Job: "chatty"}))
	if err != nil {
		e.t.Fatalf("submitting the chatty job: %v", err)
	}
	bigID := resp.Msg.Job.Id
	bigDone := func() bool {
		j, err := c.Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: bigID, Stale: true}))
		return err == nil && rpc.JobTerminal(j.Msg.Job.Status)
	}
	// Small jobs from once the chatty one prints until it is done.
	testcluster.WaitFor(e.t, 60*time.Second, func() (bool, string) {
		j, err := c.Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: bigID}))
		return err == nil && j.Msg.Job.StartedAt != nil, "chatty job not started"
	})
	lat, n, errs := e.smallJobs(project, src, func() bool { return !bigDone() })
	testcluster.WaitFor(e.t, 30*time.Minute, func() (bool, string) { return bigDone(), "chatty job not done" })
	bigWall := time.Since(start)
	close(stop)
	samplers.Wait()
	jb, err := c.Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: bigID}))
	if err != nil {
		e.t.Fatalf("reading the chatty job: %v", err)
	}
	big := jb.Msg.Job
	ran := big.FinishedAt.AsTime().Sub(big.StartedAt.AsTime())
	r.add(name, "chatty job", float64(size)/(1<<20), "MiB printed", fmt.Sprintf("%s, ran %.1fs (%.1fs from submit to seen done), as fast as it can", big.Status, ran.Seconds(), bigWall.Seconds()))
	r.add(name, "stored log", float64(big.LogBytes)/(1<<20), "MiB", fmt.Sprintf("%d lines (%.0f MiB) left out between head and tail", big.LogDroppedLines, float64(big.LogDroppedBytes)/(1<<20)))
	for _, s := range e.cluster.Servers {
		r.add(name, "raft dir growth "+s.Name(), float64(peakDir[s.Name()]-before[s.Name()])/(1<<20), "MiB",
			fmt.Sprintf("peak while it ran, over %.1f MiB before", float64(before[s.Name()])/(1<<20)))
		r.add(name, "peak RSS "+s.Name(), peakRSS[s.Name()], "MiB", "sampled every 100ms")
	}
	r.add(name, "small jobs", float64(n), "jobs", "20/s while the chatty job ran")
	r.add(name, "small pickup p50", ms(percentile(lat, 50)), "ms", fmt.Sprintf("submit returned -> runner started; alone: %.1f ms", ms(percentile(alone, 50))))
	r.add(name, "small pickup p99", ms(percentile(lat, 99)), "ms", fmt.Sprintf("alone: %.1f ms", ms(percentile(alone, 99))))
	r.add(name, "small pickup max", ms(percentile(lat, 100)), "ms", fmt.Sprintf("alone: %.1f ms", ms(percentile(alone, 100))))
	if errs > 0 {
		r.add(name, "submit errors", float64(errs), "calls", "")
	}
}

// smallJobs submits small jobs of project at 20/s, at least 100 and for as
// long as more says, waits for them, and returns their pickup latencies
// (submit returned to runner started), how many it submitted and how many
// submits failed.
func (e *env) smallJobs(project string, src []byte, more func() bool) ([]time.Duration, int, int) {
	var (
		returned sync.Map // job id -> time the submit returned
		submits  sync.WaitGroup
		errs     atomic.Int64
		n        int
		t0       = time.Now()
	)
	for i := 0; n < 100 || more(); i++ {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * 50 * time.Millisecond)))
		if time.Since(t0) > 30*time.Minute {
			e.t.Fatalf("small jobs submitted for %v", time.Since(t0))
		}
		n++
		cl := e.clients[i%len(e.clients)]
		submits.Go(func() {
			resp, err := cl.Jobs.SubmitJob(context.Background(), connect.NewRequest(&pb.SubmitJobRequest{ProjectSource: src, Job: "small"}))
			if err != nil {
				errs.Add(1)
				return
			}
			returned.Store(resp.Msg.Job.Id, time.Now())
		})
	}
	submits.Wait()
	var lat []time.Duration
	returned.Range(func(k, v any) bool {
		id := k.(string)
		testcluster.WaitFor(e.t, 5*time.Minute, func() (bool, string) {
			j, err := e.all.Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: id}))
			if err != nil {
				return false, err.Error()
			}
			if rpc.JobTerminal(j.Msg.Job.Status) && j.Msg.Job.StartedAt != nil {
				lat = append(lat, max(j.Msg.Job.StartedAt.AsTime().Sub(v.(time.Time)), 0))
				return true, ""
			}
			return rpc.JobTerminal(j.Msg.Job.Status), "small job " + id + " not finished: " + j.Msg.Job.StatusReason
		})
		return true
	})
	return lat, n, int(errs.Load())
}
