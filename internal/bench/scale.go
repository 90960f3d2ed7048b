package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/agent"
	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner"
)

var envs = []string{"prod", "staging", "dev", "test"}

// scale connects many light runners (the real runner code, in this
// process, each with its own connection) with varied labels, queues many
// jobs across four profiles, and reports the cost of dispatch decisions
// and the leader's CPU and memory.
func (e *env) scale(r *Report, sz Sizes) {
	c := e.clients[0]
	for _, env := range envs {
		_, err := c.Projects.SetProfile(context.Background(), connect.NewRequest(&pb.SetProfileRequest{
			Profile: &pb.RunnerProfile{Name: env, TargetLabels: map[string]string{"env": env}, Driver: "noop"},
		}))
		if err != nil {
			e.t.Fatalf("profile %s: %v", env, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	addrs := e.cluster.Addrs()
	hc := rpc.NewHTTPClient()
	if !e.insecure {
		hc = rpc.NewTLSHTTPClient(testcluster.RunnerTLSConfig(e.t))
	}
	for i := range sz.ScaleRunners {
		rn, err := runner.New(runner.Config{
			Name:       "light-" + strconv.Itoa(i),
			Labels:     map[string]string{"env": envs[i%len(envs)], "zone": "z" + strconv.Itoa(i%5)},
			Capacity:   2,
			Servers:    []string{addrs[i%len(addrs)], addrs[(i+1)%len(addrs)]},
			Token:      e.token,
			HTTPClient: hc,
			Logger:     hclog.NewNullLogger(),
		})
		if err != nil {
			e.t.Fatalf("runner %d: %v", i, err)
		}
		wg.Go(func() { _ = rn.Run(ctx) })
	}
	connectStart := time.Now()
	e.waitRunners(sz.ScaleRunners + len(e.runners))
	r.add("scale", "runners", float64(sz.ScaleRunners), "runners", "in one process, real RPC, 4 envs x 5 zones")
	r.add("scale", "all runners ready", ms(time.Since(connectStart)), "ms", "")

	leader, before := e.leaderStatus()
	cpu0, t0 := cpuTime(leader.Pid()), time.Now()
	project := fmt.Sprintf("scale%d", e.seq.Add(1))
	jobs := make(chan int, sz.ScaleJobs)
	for i := range sz.ScaleJobs {
		jobs <- i
	}
	close(jobs)
	var failed atomic.Int64
	var sub sync.WaitGroup
	for i := range 16 {
		cl := e.clients[i%len(e.clients)]
		sub.Go(func() {
			for n := range jobs {
				_, err := cl.Jobs.SubmitJob(context.Background(), connect.NewRequest(&pb.SubmitJobRequest{
					ProjectSource: projectSource(project, true), Job: "true",
					Variables: map[string]string{"profile": envs[n%len(envs)]},
				}))
				if err != nil {
					failed.Add(1)
				}
			}
		})
	}
	sub.Wait()
	submitted := time.Since(t0)
	// Counted, not listed: a list of 100,000 jobs would be the biggest
	// thing in the answering server's memory when it is measured.
	done := e.waitFinished(project, sz.ScaleJobs-int(failed.Load()), 30*time.Minute)
	wall := time.Since(t0)
	cpu := cpuTime(leader.Pid()) - cpu0
	_, after := e.leaderStatus()
	assigned := after.DispatchAssigned - before.DispatchAssigned
	decide := time.Duration(after.DispatchDecideNanos - before.DispatchDecideNanos)
	r.add("scale", "jobs", float64(done), "jobs", "noop, 4 profiles by label")
	r.add("scale", "queue fill", float64(done)/submitted.Seconds(), "jobs/s", "16 clients submitting")
	r.add("scale", "end-to-end", float64(done)/wall.Seconds(), "jobs/s", "")
	if assigned > 0 {
		r.add("scale", "dispatch decision", float64(decide.Microseconds())/float64(assigned), "us/job", "leader time deciding, per assignment")
		r.add("scale", "dispatch passes", float64(after.DispatchPasses-before.DispatchPasses), "passes", "")
	}
	r.add("scale", "leader CPU", 100*cpu.Seconds()/wall.Seconds(), "% of a core", "over the run")
	r.add("scale", "leader RSS", rssMiB(leader.Pid()), "MiB", fmt.Sprintf("with %d finished jobs in state", done))
	if failed.Load() > 0 {
		r.add("scale", "submit errors", float64(failed.Load()), "calls", "")
	}
}

// memory reports every server's RSS and an idle runner agent's.
func (e *env) memory(r *Report) {
	var total int
	for _, s := range e.cluster.Servers {
		if !s.Exited() {
			resp, err := s.Client().Jobs.ListJobs(context.Background(), connect.NewRequest(&pb.ListJobsRequest{CountOnly: true, Stale: true}))
			if err == nil {
				total = int(resp.Msg.Count)
			}
			r.add("memory", "server RSS "+s.Name(), rssMiB(s.Pid()), "MiB", fmt.Sprintf("%d jobs in state", total))
		}
	}
	if e.pprofDir != "" {
		e.saveProfiles("heap", "/debug/pprof/heap?gc=1")
		e.saveProfiles("heap.txt", "/debug/pprof/heap?debug=1")
	}
	p := e.startRunner("idle-runner", 4, "", 0)
	time.Sleep(3 * time.Second)
	r.add("memory", "idle runner RSS", rssMiB(p.Pid()), "MiB", "runner agent process, connected, no jobs")
}

// gossip starts n memberlist members in this process and times how long
// until every one sees all n alive.
func gossip(r *Report, t testing.TB, n int) {
	var members []*agent.Gossip
	defer func() {
		for _, g := range members {
			_ = g.Shutdown()
		}
	}()
	for i := range n {
		port := testcluster.FreePort(t)
		g, err := agent.StartGossip(agent.GossipConfig{
			Name: "m" + strconv.Itoa(i), BindAddr: "127.0.0.1", Port: port, Fast: true,
			Logger: hclog.NewNullLogger(), Meta: agent.NodeMeta{Role: agent.RoleRunner},
		})
		if err != nil {
			t.Fatalf("gossip member %d: %v", i, err)
		}
		members = append(members, g)
	}
	seed := "127.0.0.1:" + strconv.Itoa(members[0].Port())
	start := time.Now()
	for _, g := range members[1:] {
		if _, err := g.Join([]string{seed}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	joined := time.Since(start)
	for {
		converged := true
		for _, g := range members {
			alive := 0
			for _, m := range g.Members() {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive < n {
				converged = false
				break
			}
		}
		if converged {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("gossip pool of %d did not converge in 5m", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.add("gossip", "members", float64(n), "members", "in one process, loopback, LAN-fast timings")
	r.add("gossip", "joins", ms(joined), "ms", "every member joining through one seed")
	r.add("gossip", "convergence", ms(time.Since(start)), "ms", "until every member sees all alive")
}
