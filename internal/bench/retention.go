package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// retentionConfig is the servers' config for the retention scenario: the
// count bound of issue 13's benchmark.
func retentionConfig(maxFinished int) string {
	return fmt.Sprintf("server {\n  job_gc_max_finished = %d\n}\n", maxFinished)
}

// retention runs noop jobs through a cluster that keeps at most
// RetentionMax finished jobs, and at each checkpoint (once every job
// submitted so far has finished) reports every server's RSS, Raft
// directory and latest snapshot sizes, the finished jobs it holds, and the
// time each takes from a restart (SIGKILL, start again) until it is ready:
// a leader is known and it has applied what the leader had. Past the
// retention point these should stay flat. Figures, not assertions.
func (e *env) retention(r *Report, sz Sizes) {
	project := fmt.Sprintf("ret%d", e.seq.Add(1))
	submitted := 0
	start := time.Now()
	for _, target := range sz.RetentionJobs {
		phase := time.Now()
		n := target - submitted
		failed := e.submitNoop(project, n, sz.Clients)
		submitted = target
		e.waitQuiet(project, time.Duration(n/50+120)*time.Second)
		name := fmt.Sprintf("retention/%dk", target/1000)
		if target%1000 != 0 {
			name = fmt.Sprintf("retention/%d", target)
		}
		r.add(name, "jobs run", float64(target), "jobs", fmt.Sprintf("noop; job_gc_max_finished %d; %.0f jobs/s over this phase", sz.RetentionMax, float64(n)/time.Since(phase).Seconds()))
		if failed > 0 {
			r.add(name, "submit errors", float64(failed), "calls", "")
		}
		e.measureServers(r, name, project)
	}
	r.add("retention", "total", time.Since(start).Seconds(), "s", fmt.Sprintf("%d jobs, restarts included", submitted))
}

// submitNoop submits n noop jobs of project from `clients` concurrent
// clients, spread over the servers; it returns how many failed.
func (e *env) submitNoop(project string, n, clients int) int {
	jobs := make(chan struct{}, n)
	for range n {
		jobs <- struct{}{}
	}
	close(jobs)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		c := e.clients[i%len(e.clients)]
		wg.Go(func() {
			for range jobs {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := e.submit(ctx, c, project, "noop"); err != nil {
					failed.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	return int(failed.Load())
}

// waitQuiet waits until no job of project is in play.
func (e *env) waitQuiet(project string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		busy := 0
		for _, st := range []string{rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling} {
			resp, err := e.all.Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{Project: project, Status: st, CountOnly: true}))
			if err != nil {
				busy = -1
				break
			}
			busy += int(resp.Msg.Count)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("jobs of %s still in play (%d) after %v", project, busy, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measureServers reports each server's figures, then restarts each in
// turn (followers first, the leader last) and reports how long it took
// to be ready.
func (e *env) measureServers(r *Report, name, project string) {
	// A second or two for the collector, which checks every second.
	time.Sleep(3 * time.Second)
	leader, _ := e.waitLeader()
	var order []*testcluster.Server
	for _, s := range e.cluster.Servers {
		if s != leader {
			order = append(order, s)
		}
	}
	order = append(order, leader)
	for _, s := range order {
		role := "follower"
		if s == leader {
			role = "leader"
		}
		held := -1
		if resp, err := s.Client().Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{Project: project, CountOnly: true, Stale: true})); err == nil {
			held = int(resp.Msg.Count)
		}
		raftDir := filepath.Join(s.Options().DataDir, "raft")
		snap, snapAt := latestSnapshot(raftDir)
		r.add(name, "RSS "+s.Name(), rssMiB(s.Pid()), "MiB", fmt.Sprintf("%s, %d jobs held", role, held))
		r.add(name, "raft dir "+s.Name(), float64(testcluster.DirSize(raftDir))/(1<<20), "MiB", "raft.db and snapshots")
		r.add(name, "snapshot "+s.Name(), float64(snap)/(1<<20), "MiB", snapAt)
	}
	for _, s := range order {
		role := "follower"
		if s == leader {
			role = "leader (re-election included)"
		}
		d, err := e.restartTimed(s)
		if err != nil {
			e.t.Fatalf("restarting %s: %v", s.Name(), err)
		}
		r.add(name, "restart to ready "+s.Name(), ms(d), "ms", role)
	}
}

// restartTimed kills s, starts it again and returns the time from the
// start until it answers with a leader and has applied what the leader
// had applied when it was killed.
func (e *env) restartTimed(s *testcluster.Server) (time.Duration, error) {
	_, st := e.waitLeader()
	target := st.LastIndex
	s.Kill()
	start := time.Now()
	s.Process.Restart()
	deadline := start.Add(5 * time.Minute)
	for {
		if s.Exited() {
			return 0, fmt.Errorf("exited at its restart: %s", s.Tail(10))
		}
		st, err := s.Status(context.Background())
		if err == nil && st.Leader != "" && st.LastIndex >= target {
			d := time.Since(start)
			// Back to a cluster with every server in it before the next.
			e.waitLeader()
			return d, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not ready within 5m (status %v, %v)", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// latestSnapshot is the size of the newest Raft snapshot in raftDir and
// its name (term-index-time), or 0 and "no snapshot yet".
func latestSnapshot(raftDir string) (int64, string) {
	entries, err := os.ReadDir(filepath.Join(raftDir, "snapshots"))
	if err != nil {
		return 0, "no snapshot yet"
	}
	var names []string
	for _, en := range entries {
		if en.IsDir() && !strings.HasSuffix(en.Name(), ".tmp") {
			names = append(names, en.Name())
		}
	}
	if len(names) == 0 {
		return 0, "no snapshot yet"
	}
	// Names sort by term, then index (zero-padded they are not; sort by
	// modification time instead).
	sort.Slice(names, func(a, b int) bool {
		ia, _ := os.Stat(filepath.Join(raftDir, "snapshots", names[a]))
		ib, _ := os.Stat(filepath.Join(raftDir, "snapshots", names[b]))
		return ia != nil && ib != nil && ia.ModTime().Before(ib.ModTime())
	})
	newest := names[len(names)-1]
	info, err := os.Stat(filepath.Join(raftDir, "snapshots", newest, "state.bin"))
	if err != nil {
		return 0, newest
	}
	return info.Size(), "snapshot " + newest
}

// waitLeader is leaderStatus that waits out an election (a kill, or a
// leader that stepped down on a loaded machine) for up to a minute.
func (e *env) waitLeader() (*testcluster.Server, *pb.StatusResponse) {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := e.cluster.Leader(ctx)
		if err == nil {
			st, serr := l.Status(ctx)
			cancel()
			if serr == nil && st.IsLeader {
				return l, st
			}
			err = serr
		} else {
			cancel()
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no leader within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
