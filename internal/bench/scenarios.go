package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Sizes scales the suite: the full run uses the figures, the smoke
// run just enough to exercise every path.
type Sizes struct {
	Mode            string
	ThroughputJobs  int
	Clients         int
	Runners         int
	RunnerCapacity  int
	LatencyRates    []int
	LatencyDuration time.Duration
	FailoverRate    int
	ScaleRunners    int
	ScaleJobs       int
	GossipMembers   int
	// RetentionJobs are the checkpoints of the retention scenario (jobs
	// run so far), RetentionMax its servers' job_gc_max_finished.
	RetentionJobs []int
	RetentionMax  int
	// BigLogBytes is what the chatty job of the biglog scenario prints.
	BigLogBytes int64
}

var (
	Full = Sizes{Mode: "full", ThroughputJobs: 20000, Clients: 16, Runners: 4, RunnerCapacity: 64,
		LatencyRates: []int{100, 1000}, LatencyDuration: 10 * time.Second, FailoverRate: 50,
		ScaleRunners: 2000, ScaleJobs: 100000, GossipMembers: 200,
		RetentionJobs: []int{50000, 150000, 300000}, RetentionMax: 20000, BigLogBytes: 1 << 30}
	Smoke = Sizes{Mode: "smoke", ThroughputJobs: 200, Clients: 4, Runners: 2, RunnerCapacity: 16,
		LatencyRates: []int{50}, LatencyDuration: 2 * time.Second, FailoverRate: 20,
		ScaleRunners: 30, ScaleJobs: 300, GossipMembers: 10,
		RetentionJobs: []int{200, 600, 1200}, RetentionMax: 100, BigLogBytes: 32 << 20}
)

// projectSource has one job running /bin/true; "noop" runs are the same
// job with the noop driver, which spawns nothing.
// With profiles, the job's runner profile comes from -var profile=NAME.
func projectSource(name string, profiles bool) []byte {
	stanza := ""
	if profiles {
		stanza = "variable \"profile\" {}\nrunner { profile = var.profile }\n"
	}
	return []byte(fmt.Sprintf("project = %q\n%sjob \"true\" {\n  step \"t\" { command = [\"/bin/true\"] }\n}\n", name, stanza))
}

type env struct {
	smoke   bool
	all     *rpc.Client
	t       *testing.T
	cluster *testcluster.Cluster
	clients []*rpc.Client
	runners []*testcluster.Process
	token   string
	seq     atomic.Int64
	// pprofDir, from OUTPOST_BENCH_PPROF, receives CPU profiles of every
	// server taken during the noop throughput run.
	pprofDir string
	// insecure runs every agent with -insecure-no-tls (the tls scenario's
	// baseline); otherwise all run with TLS, as in production.
	insecure bool
}

func startEnv(t *testing.T, sz Sizes) *env { return startEnvWith(t, sz, "") }

// startEnvWith starts the cluster with serverHCL as one more config file
// of every server, when not empty.
func startEnvWith(t *testing.T, sz Sizes, serverHCL string) *env {
	return startEnvTLS(t, sz, serverHCL, false)
}

// startEnvTLS is startEnvWith, without TLS when insecure.
func startEnvTLS(t *testing.T, sz Sizes, serverHCL string, insecure bool) *env {
	e := &env{t: t, smoke: sz.Mode != "full", pprofDir: os.Getenv("OUTPOST_BENCH_PPROF"), insecure: insecure}
	// Multiplier 2 (400 ms heartbeat timeout): 1 made leaders step down
	// under full load on two cores.
	opts := testcluster.ServerOptions{Name: "bench", RaftMultiplier: 2, LogLevel: "warn", InsecureNoTLS: insecure}
	if e.pprofDir != "" {
		if err := os.MkdirAll(e.pprofDir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(t.TempDir(), "debug.hcl")
		if err := os.WriteFile(cfg, []byte("enable_debug = true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		opts.ExtraArgs = []string{"-config=" + cfg}
	}
	if serverHCL != "" {
		cfg := filepath.Join(t.TempDir(), "server.hcl")
		if err := os.WriteFile(cfg, []byte(serverHCL), 0o600); err != nil {
			t.Fatal(err)
		}
		opts.ExtraArgs = append(opts.ExtraArgs, "-config="+cfg)
	}
	e.cluster = testcluster.StartCluster(t, 3, opts)
	for _, s := range e.cluster.Servers {
		e.clients = append(e.clients, s.Client())
	}
	tc := testcluster.ClientTLSConfig(t)
	if insecure {
		tc = nil
	}
	all, err := rpc.NewClientTLS(strings.Join(e.cluster.Addrs(), ","), nil, tc, rpc.WithToken(e.cluster.Token()))
	if err != nil {
		t.Fatal(err)
	}
	// Watching for results must outlive any one server (failover kills
	// the leader), so it goes through every address.
	e.all = all
	e.token = e.createToken()
	for i := range sz.Runners {
		e.runners = append(e.runners, e.startRunner(fmt.Sprintf("runner-%d", i), sz.RunnerCapacity, "", i))
	}
	e.waitRunners(sz.Runners)
	return e
}

func (e *env) createToken() string {
	resp, err := e.clients[0].Runners.CreateRunnerToken(context.Background(), connect.NewRequest(&pb.CreateRunnerTokenRequest{Description: "bench"}))
	if err != nil {
		e.t.Fatalf("creating runner token: %v", err)
	}
	return resp.Msg.Token
}

// startRunner starts a runner process that tries the servers starting with
// the i-th, so runners spread over the cluster.
func (e *env) startRunner(name string, capacity int, labels string, i int) *testcluster.Process {
	servers := ""
	for k := range e.cluster.Servers {
		if k > 0 {
			servers += ","
		}
		servers += e.cluster.Servers[(i+k)%len(e.cluster.Servers)].Addr()
	}
	dir := e.t.TempDir()
	args := []string{"runner", "agent", "-server=" + servers, "-name=" + name, "-capacity=" + strconv.Itoa(capacity),
		"-data-dir=" + dir, "-token=" + e.token, "-bind=127.0.0.1", "-log-level=warn", "-encrypt=" + testcluster.GossipKey}
	if labels != "" {
		args = append(args, "-label="+labels)
	}
	if e.insecure {
		args = append(args, "-insecure-no-tls")
	} else {
		args = append(args, testcluster.RunnerTLS(e.t).Args()...)
	}
	return testcluster.StartProcess(e.t, testcluster.ProcessOptions{Name: name, Args: args, DataDir: dir})
}

func (e *env) waitRunners(n int) {
	testcluster.WaitFor(e.t, 60*time.Second, func() (bool, string) {
		runners, err := rpc.AllRunners(context.Background(), e.clients[0].Runners, false)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, r := range runners {
			if r.Status == rpc.RunnerAdopted && r.State == rpc.RunnerReady {
				ready++
			}
		}
		return ready >= n, fmt.Sprintf("%d of %d runners adopted and ready", ready, n)
	})
}

func (e *env) leaderStatus() (*testcluster.Server, *pb.StatusResponse) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := e.cluster.Leader(ctx)
	if err != nil {
		e.t.Fatalf("no leader: %v", err)
	}
	st, err := l.Status(ctx)
	if err != nil {
		e.t.Fatalf("leader status: %v", err)
	}
	return l, st
}

func (e *env) submit(ctx context.Context, c *rpc.Client, project, driver string) (*pb.Job, error) {
	resp, err := c.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{
		Id: rpc.NewJobID(), ProjectSource: projectSource(project, false), Job: "true", Driver: driver,
	}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.Job, nil
}

// waitDone waits until n jobs of project have finished and returns them.
func (e *env) waitDone(project string, n int, timeout time.Duration) []*pb.Job {
	e.waitFinished(project, n, timeout)
	jobs, err := rpc.AllJobs(context.Background(), e.all.Jobs, &pb.ListJobsRequest{Project: project})
	if err != nil {
		e.t.Fatalf("listing jobs: %v", err)
	}
	return jobs
}

// waitFinished waits until n jobs of project have finished and returns
// how many have, counting without listing them.
func (e *env) waitFinished(project string, n int, timeout time.Duration) int {
	e.t.Logf("waiting for %d jobs of %s to finish", n, project)
	if e.smoke {
		timeout = min(timeout, 90*time.Second)
	}
	c := e.all
	deadline := time.Now().Add(timeout)
	for {
		done := 0
		for _, st := range []string{rpc.JobSucceeded, rpc.JobFailed, rpc.JobLost, rpc.JobCanceled} {
			resp, err := c.Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{Project: project, Status: st, CountOnly: true}))
			if err == nil {
				done += int(resp.Msg.Count)
			}
		}
		if done >= n {
			return done
		}
		if time.Now().After(deadline) {
			var sample []string
			for _, st := range []string{rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling} {
				resp, _ := c.Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{Project: project, Status: st, PageSize: 3}))
				if resp != nil {
					for _, j := range resp.Msg.Jobs {
						sample = append(sample, j.Id+" "+j.Status+" on "+j.RunnerId+": "+j.StatusReason)
					}
				}
			}
			e.t.Fatalf("only %d of %d jobs of %s finished within %v; unfinished: %v", done, n, project, timeout, sample)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Throughput: n jobs from `clients` concurrent clients; jobs/s from the
// first submit to the last finish, and the log cost per job.
func (e *env) throughput(r *Report, sz Sizes, driver string) {
	e.throughputAs(r, sz, driver, "throughput/"+map[string]string{"": "true", "noop": "noop"}[driver])
}

// throughputAs is throughput, reported under name.
func (e *env) throughputAs(r *Report, sz Sizes, driver, name string) {
	project := fmt.Sprintf("tp%d", e.seq.Add(1))
	_, before := e.leaderStatus()
	cpuBefore := e.cpuByRole()
	jobs := make(chan struct{}, sz.ThroughputJobs)
	for range sz.ThroughputJobs {
		jobs <- struct{}{}
	}
	close(jobs)
	start := time.Now()
	if driver == "noop" && e.pprofDir != "" {
		go e.profileServers(name, 10*time.Second)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	calls := make([][]time.Duration, sz.Clients)
	for i := range sz.Clients {
		c := e.clients[i%len(e.clients)]
		wg.Go(func() {
			for range jobs {
				t0 := time.Now()
				if _, err := e.submit(context.Background(), c, project, driver); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				calls[i] = append(calls[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	var callTimes []time.Duration
	for _, c := range calls {
		callTimes = append(callTimes, c...)
	}
	submitted := time.Since(start)
	done := e.waitDone(project, sz.ThroughputJobs-int(failed.Load()), 10*time.Minute)
	var last time.Time
	for _, j := range done {
		if f := j.FinishedAt.AsTime(); f.After(last) {
			last = f
		}
	}
	_, after := e.leaderStatus()
	n := float64(len(done))
	elapsed := last.Sub(start)
	r.add(name, "jobs", n, "jobs", fmt.Sprintf("%d clients, %d runners x %d slots", sz.Clients, sz.Runners, sz.RunnerCapacity))
	r.add(name, "end-to-end", n/elapsed.Seconds(), "jobs/s", "first submit to last finish")
	r.add(name, "submit", n/submitted.Seconds(), "jobs/s", "submit calls alone")
	// Each client waits for its submit: these bound what 16 clients can do.
	r.add(name, "submit call p50/p99", ms(percentile(callTimes, 50)), "ms", fmt.Sprintf("p99 %.1f ms", ms(percentile(callTimes, 99))))
	r.add(name, "raft entries", float64(after.LogEntriesStored-before.LogEntriesStored)/n, "per job", "leader log entries")
	r.add(name, "log writes", float64(after.LogStoreCalls-before.LogStoreCalls)/n, "fsyncs/job", "leader log-store writes")
	var kinds []string
	for k, v := range after.EntriesApplied {
		if d := v - before.EntriesApplied[k]; d > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %.2f", k, float64(d)/n))
		}
	}
	sort.Strings(kinds)
	r.add(name, "entries by type", 0, "per job", strings.Join(kinds, ", "))
	// Where the two cores went: CPU per job by role, from first submit to
	// the last result read.
	cpuAfter := e.cpuByRole()
	for _, role := range []string{"servers", "runners", "clients"} {
		r.add(name, "cpu "+role, ms(cpuAfter[role]-cpuBefore[role])/n, "ms/job", "")
	}
	if failed.Load() > 0 {
		r.add(name, "submit errors", float64(failed.Load()), "calls", fmt.Sprint(firstErr.Load()))
	}
}

// Pickup latency: open-loop submissions at a fixed rate; time from a
// submit returning to the runner starting the job.
func (e *env) pickup(r *Report, rate int, d time.Duration) {
	project := fmt.Sprintf("lat%d", e.seq.Add(1))
	var (
		mu       sync.Mutex
		returned = map[string]time.Time{}
		wg       sync.WaitGroup
		errs     atomic.Int64
	)
	sem := make(chan struct{}, 512)
	interval := time.Second / time.Duration(rate)
	total := int(d / interval)
	start := time.Now()
	for i := range total {
		// Open loop: each submission leaves on its own schedule, whether
		// or not earlier ones have returned.
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		sem <- struct{}{}
		c := e.clients[i%len(e.clients)]
		wg.Go(func() {
			defer func() { <-sem }()
			j, err := e.submit(context.Background(), c, project, "noop")
			if err != nil {
				errs.Add(1)
				return
			}
			now := time.Now()
			mu.Lock()
			returned[j.Id] = now
			mu.Unlock()
		})
	}
	wg.Wait()
	lastReturn := time.Since(start)
	done := e.waitDone(project, len(returned), 5*time.Minute)
	var lastStart time.Time
	for _, j := range done {
		if j.StartedAt != nil && j.StartedAt.AsTime().After(lastStart) {
			lastStart = j.StartedAt.AsTime()
		}
	}
	var lat, toAssign, toStart []time.Duration
	for _, j := range done {
		if t0, ok := returned[j.Id]; ok && j.StartedAt != nil {
			lat = append(lat, max(j.StartedAt.AsTime().Sub(t0), 0))
			if j.AssignedAt != nil {
				toAssign = append(toAssign, max(j.AssignedAt.AsTime().Sub(t0), 0))
				toStart = append(toStart, max(j.StartedAt.AsTime().Sub(j.AssignedAt.AsTime()), 0))
			}
		}
	}
	name := fmt.Sprintf("pickup/%d-per-s", rate)
	r.add(name, "jobs", float64(len(lat)), "jobs", fmt.Sprintf("open loop for %v", d))
	// Whether the load was really offered and absorbed: submits that
	// queue behind the concurrency cap would lower the rate unseen.
	r.add(name, "submitted", float64(len(returned))/lastReturn.Seconds(), "jobs/s", "first submit to last submit returned")
	r.add(name, "started", float64(len(lat))/lastStart.Sub(start).Seconds(), "jobs/s", "first submit to last job started")
	r.add(name, "p50", ms(percentile(lat, 50)), "ms", "submit returned -> runner started")
	r.add(name, "p95", ms(percentile(lat, 95)), "ms", "")
	r.add(name, "p99", ms(percentile(lat, 99)), "ms", "")
	r.add(name, "max", ms(percentile(lat, 100)), "ms", "")
	// Where the time goes: the leader's assignment, then the runner
	// hearing of it and starting.
	r.add(name, "to assigned p50/p99", ms(percentile(toAssign, 50)), "ms", fmt.Sprintf("p99 %.1f ms", ms(percentile(toAssign, 99))))
	r.add(name, "assigned to started p50/p99", ms(percentile(toStart, 50)), "ms", fmt.Sprintf("p99 %.1f ms", ms(percentile(toStart, 99))))
	if errs.Load() > 0 {
		r.add(name, "submit errors", float64(errs.Load()), "calls", "")
	}
}

// Failover: steady load, SIGKILL the leader, time until submits succeed
// again and until jobs are dispatched again.
func (e *env) failover(r *Report, rate int) {
	project := fmt.Sprintf("fo%d", e.seq.Add(1))
	all := e.all
	leader, _ := e.leaderStatus()
	var (
		killedAt    atomic.Int64 // unix nanos, 0 before the kill
		firstOK     atomic.Int64
		stop        = make(chan struct{})
		wg          sync.WaitGroup
		errsAfter   atomic.Int64
		interval    = time.Second / time.Duration(rate)
		submitted   atomic.Int64
		rng         = rand.New(rand.NewPCG(1, 2))
		jitterMaxNs = int64(interval) / 10
	)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval + time.Duration(rng.Int64N(jitterMaxNs+1))):
			}
			wg.Go(func() {
				sent := time.Now().UnixNano()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_, err := e.submit(ctx, all, project, "noop")
				k := killedAt.Load()
				if err != nil {
					if k != 0 {
						errsAfter.Add(1)
					}
					return
				}
				submitted.Add(1)
				if k != 0 && sent > k {
					firstOK.CompareAndSwap(0, time.Now().UnixNano())
				}
			})
		}
	})
	time.Sleep(3 * time.Second)
	killedAt.Store(time.Now().UnixNano())
	leader.Kill()
	testcluster.WaitFor(e.t, 60*time.Second, func() (bool, string) { return firstOK.Load() != 0, "no submit has succeeded since the kill" })
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	kill := time.Unix(0, killedAt.Load())
	var firstAssigned time.Time
	for _, j := range e.waitDone(project, int(submitted.Load()), 2*time.Minute) {
		if a := j.AssignedAt.AsTime(); j.AssignedAt != nil && a.After(kill) && (firstAssigned.IsZero() || a.Before(firstAssigned)) {
			firstAssigned = a
		}
	}
	r.add("failover", "submit resumes", ms(time.Unix(0, firstOK.Load()).Sub(kill)), "ms", fmt.Sprintf("SIGKILL of the leader under %d jobs/s", rate))
	r.add("failover", "dispatch resumes", ms(firstAssigned.Sub(kill)), "ms", "first assignment after the kill")
	r.add("failover", "failed submits", float64(errsAfter.Load()), "calls", "after the kill; clients retry them")
}

// profileServers saves a CPU profile of every server, taken at the same
// time, to pprofDir/<scenario>-<server>.pprof.
func (e *env) profileServers(scenario string, d time.Duration) {
	e.saveProfiles(strings.ReplaceAll(scenario, "/", "-")+".pprof", fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())))
}

// saveProfiles fetches path from every live server at once and saves each
// answer to pprofDir/<server>-<name>.
func (e *env) saveProfiles(name, path string) {
	var wg sync.WaitGroup
	for _, s := range e.cluster.Servers {
		if s.Exited() {
			continue
		}
		wg.Go(func() {
			resp, err := s.Client().HTTP.Get(s.Addr() + path)
			if err != nil {
				e.t.Logf("profiling %s: %v", s.Name(), err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(e.pprofDir, s.Name()+"-"+name))
			if err != nil {
				e.t.Logf("profiling %s: %v", s.Name(), err)
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
		})
	}
	wg.Wait()
}

// cpuByRole is the CPU time used so far by the servers, the runner
// processes and this process (the clients), for CPU-per-job figures.
func (e *env) cpuByRole() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, s := range e.cluster.Servers {
		if !s.Exited() {
			out["servers"] += cpuTime(s.Pid())
		}
	}
	for _, p := range e.runners {
		if !p.Exited() {
			out["runners"] += cpuTime(p.Pid())
		}
	}
	out["clients"] = cpuTime(os.Getpid())
	return out
}
