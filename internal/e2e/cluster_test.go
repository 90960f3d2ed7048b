package e2e

// Fault injection on real three-server clusters: leaders killed under load,
// a follower brought back from far behind, a snapshot moved to a fresh
// cluster, quorum lost and regained, servers leaving and being removed.
//
// Every wait is on a condition with a generous deadline; durations (time to
// elect, time until writes are accepted again) are logged as observations,
// never asserted. The machine may be loaded: with -raft-multiplier=1 a busy
// box sees the odd election even without a fault, so nothing here assumes
// that the leader stays put unless the test made it move.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/internal/testcluster"
	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ftTimeout bounds waits for a cluster to settle after a fault: an
// election, a restart, a follower catching up, queued jobs draining.
const ftTimeout = 90 * time.Second

// ftClient returns a client that fails over between the given servers.
func ftClient(t *testing.T, servers ...*testcluster.Server) *rpc.Client {
	t.Helper()
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	c, err := rpc.NewClientTLS(strings.Join(addrs, ","), nil, testcluster.ClientTLSConfig(t), rpc.WithToken(servers[0].Token()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ftLive returns the servers that are running.
func ftLive(c *testcluster.Cluster) []*testcluster.Server {
	var out []*testcluster.Server
	for _, s := range c.Servers {
		if !s.Exited() {
			out = append(out, s)
		}
	}
	return out
}

// ftOthers returns the servers of c other than s.
func ftOthers(c *testcluster.Cluster, s *testcluster.Server) []*testcluster.Server {
	var out []*testcluster.Server
	for _, o := range c.Servers {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

// ftElect polls, quickly, until exactly one running server other than old
// leads, and returns it with how long that took from since. Tighter polling
// than Cluster.WaitForLeader, as the time is an observation worth having.
func ftElect(t *testing.T, c *testcluster.Cluster, old *testcluster.Server, since time.Time) (*testcluster.Server, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ftTimeout)
	defer cancel()
	var leader *testcluster.Server
	var took time.Duration
	err := testwait.Poll(ctx, testwait.Backoff{Min: 20 * time.Millisecond, Max: 20 * time.Millisecond}, func() (bool, error) {
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, err := c.Leader(lctx)
		lcancel()
		switch {
		case err != nil:
			return false, err
		case l == old:
			return false, errors.New(old.Name() + " still leads")
		}
		leader, took = l, time.Since(since)
		return true, nil
	})
	if err != nil {
		t.Fatalf("no new leader within %v of the fault: %v", ftTimeout, err)
	}
	return leader, took
}

// ftPeers returns the Raft peers as s sees them (a consistent read), sorted
// by name.
func ftPeers(ctx context.Context, s *testcluster.Server) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := s.Client().Operator.RaftPeers(ctx, connect.NewRequest(&pb.RaftPeersRequest{}))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range resp.Msg.Peers {
		ids = append(ids, p.Id)
	}
	sort.Strings(ids)
	return ids, nil
}

// ftPeersBecome waits, up to timeout, until a consistent read on some
// running server lists exactly the servers want as Raft peers. It reports
// whether they did, and otherwise what the servers listed.
func ftPeersBecome(c *testcluster.Cluster, timeout time.Duration, want ...*testcluster.Server) (bool, string) {
	var names []string
	for _, s := range want {
		names = append(names, s.Name())
	}
	sort.Strings(names)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := testwait.Poll(ctx, testwait.Backoff{Min: 100 * time.Millisecond, Max: 100 * time.Millisecond}, func() (bool, error) {
		var views []string
		for _, s := range ftLive(c) {
			got, err := ftPeers(context.Background(), s)
			if err != nil {
				views = append(views, fmt.Sprintf("%s: %v", s.Name(), err))
				continue
			}
			if slices.Equal(got, names) {
				return true, nil
			}
			views = append(views, fmt.Sprintf("%s lists %v", s.Name(), got))
		}
		return false, fmt.Errorf("want raft peers %v; %s", names, strings.Join(views, "; "))
	})
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

// ftWaitPeers is ftPeersBecome that fails the test.
func ftWaitPeers(t *testing.T, c *testcluster.Cluster, want ...*testcluster.Server) {
	t.Helper()
	if ok, msg := ftPeersBecome(c, ftTimeout, want...); !ok {
		t.Fatalf("not within %v: %s", ftTimeout, msg)
	}
}

// ftKeepLogs copies the servers' whole logs into the directory
// $E2E_KEEP_LOGS, when set, if the test fails: the harness prints only
// their tails, and removes the files.
func ftKeepLogs(t *testing.T, c *testcluster.Cluster) {
	dir := os.Getenv("E2E_KEEP_LOGS")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, s := range c.Servers {
			_ = os.WriteFile(filepath.Join(dir, t.Name()+"-"+s.Name()+".log"), []byte(s.Logs()), 0o644)
		}
	})
}

// ftPeersNow returns the Raft peers from the first running server that
// answers a consistent read.
func ftPeersNow(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	var got []string
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		var views []string
		for _, s := range ftLive(c) {
			p, err := ftPeers(context.Background(), s)
			if err == nil {
				got = p
				return true, ""
			}
			views = append(views, fmt.Sprintf("%s: %v", s.Name(), err))
		}
		return false, strings.Join(views, "; ")
	})
	return got
}

// ftWaitCaughtUp waits until every running server has applied everything
// the leader had applied when the wait began, so stale reads on each of
// them can be compared.
func ftWaitCaughtUp(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	leader := c.WaitForLeader(ftTimeout)
	st, err := leader.Status(context.Background())
	if err != nil {
		t.Fatalf("status of leader %s: %v", leader.Name(), err)
	}
	target := st.LastIndex
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		for _, s := range ftLive(c) {
			st, err := s.Status(context.Background())
			if err != nil {
				return false, fmt.Sprintf("%s: %v", s.Name(), err)
			}
			if st.LastIndex < target {
				return false, fmt.Sprintf("%s has applied index %d, the leader %s had %d", s.Name(), st.LastIndex, leader.Name(), target)
			}
		}
		return true, ""
	})
}

var ftStatuses = []string{
	rpc.JobPending, rpc.JobAssigned, rpc.JobRunning, rpc.JobCanceling,
	rpc.JobSucceeded, rpc.JobFailed, rpc.JobCanceled, rpc.JobLost,
}

// ftCounts returns how many jobs of project s holds in each status.
func ftCounts(s *testcluster.Server, project string, stale bool) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, st := range ftStatuses {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		resp, err := s.Client().Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: project, Status: st, CountOnly: true, Stale: stale}))
		cancel()
		if err != nil {
			return nil, err
		}
		if resp.Msg.Count > 0 {
			out[st] = resp.Msg.Count
		}
	}
	return out, nil
}

// ftListJobs returns every job of project on s.
func ftListJobs(t *testing.T, s *testcluster.Server, project string, stale bool) []*pb.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	jobs, err := rpc.AllJobs(ctx, s.Client().Jobs, &pb.ListJobsRequest{Project: project, Stale: stale})
	if err != nil {
		t.Fatalf("ListJobs on %s: %v", s.Name(), err)
	}
	return jobs
}

// ftEach runs f for every item on a few goroutines and returns the errors
// it reported, in no particular order.
func ftEach[T any](items []T, workers int, f func(T) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	ch := make(chan T)
	for range workers {
		wg.Go(func() {
			for it := range ch {
				if err := f(it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	return errs
}

// ftFirstN shortens a list of problems for a failure message.
func ftFirstN[T any](xs []T, n int) string {
	var b strings.Builder
	for i, x := range xs {
		if i == n {
			fmt.Fprintf(&b, "\n  ... and %d more", len(xs)-n)
			break
		}
		fmt.Fprintf(&b, "\n  %v", x)
	}
	return b.String()
}

// The leader is SIGKILLed three times in a row (each killed server is
// restarted before the next kill, so a quorum always remains) while clients
// submit jobs as fast as they can. No acknowledged job may be lost or
// doubled, every one of them must run, and the clients must only ever see
// the retryable "no leader" error while the cluster elects.
func TestLeaderKilledUnderLoad(t *testing.T) {
	e2e(t)
	const project = "under-load"
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{
		Name:           "lk",
		RaftMultiplier: 1,
		// Every server runs jobs, so work goes on while one is dead.
		Runner:   true,
		Capacity: 16,
		LogLevel: "debug",
	})
	ftKeepLogs(t, c)
	client := ftClient(t, c.Servers...)
	load := testcluster.StartLoad(t, client, testcluster.LoadOptions{
		// A job whose runner is killed with its server is lost and
		// requeued; the retry stanza leaves room for that to happen more
		// than once to one job across three kills.
		Source:  testcluster.NoopProject(project, 3),
		Workers: 8,
	})
	load.WaitAcked(100, ftTimeout)

	for round := 1; round <= 3; round++ {
		leader := c.WaitForLeader(ftTimeout)
		before := load.AckedCount()
		killedAt := time.Now()
		leader.Kill()
		next, elected := ftElect(t, c, leader, killedAt)
		load.WaitAcked(50, ftTimeout)
		resumed := "unknown"
		if at, ok := load.FirstAckAfter(killedAt); ok {
			resumed = at.Sub(killedAt).Round(time.Millisecond).String()
		}
		t.Logf("round %d: killed leader %s with %d jobs acknowledged; %s leads after %v; first submit sent after the kill acknowledged %s after it",
			round, leader.Name(), before, next.Name(), elected.Round(time.Millisecond), resumed)
		// Back to three before the next kill, so two remain for a quorum.
		leader.Restart()
		load.WaitAcked(50, ftTimeout)
	}
	load.Stop()

	acked := load.Acked()
	attempts := load.Attempts()
	t.Logf("%d jobs acknowledged in %d attempts; failed attempts by code: %v", len(acked), len(attempts), load.ErrorsBy())
	// What the clients were told, ports and ids blanked, for the record.
	digits := regexp.MustCompile(`[0-9a-f]{16}|[0-9]+`)
	said := map[string]int{}
	for _, a := range attempts {
		if a.Err != nil {
			said[digits.ReplaceAllString(a.Err.Error(), "#")]++
		}
	}
	for _, msg := range slices.Sorted(maps.Keys(said)) {
		t.Logf("  %4d x %s", said[msg], msg)
	}
	if ab := load.Abandoned(); len(ab) > 0 {
		t.Errorf("%d submits were never acknowledged despite retries: %v", len(ab), ftFirstN(ab, 10))
	}
	// During elections a client may only be told to retry: Unavailable.
	// Anything else would leave it not knowing whether to.
	var odd []testcluster.Attempt
	for _, a := range attempts {
		if a.Err != nil && a.Code != connect.CodeUnavailable {
			odd = append(odd, a)
		}
	}
	if len(odd) > 0 {
		t.Errorf("%d submit attempts failed with an error other than Unavailable:%s", len(odd), ftFirstN(odd, 10))
	}

	// Every acknowledged job runs to the end, despite the kills.
	waitStart := time.Now()
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		jobs, err := rpc.AllJobs(ctx, client.Jobs, &pb.ListJobsRequest{Project: project})
		if err != nil {
			return false, err.Error()
		}
		var notDone []string
		for _, j := range jobs {
			if j.Status != rpc.JobSucceeded {
				notDone = append(notDone, fmt.Sprintf("%s %s (%s), attempt %d, lease %d", j.Id, j.Status, j.StatusReason, j.Attempt, j.Lease))
			}
		}
		return len(notDone) == 0, fmt.Sprintf("%d of %d jobs not succeeded:%s", len(notDone), len(jobs), ftFirstN(notDone, 5))
	})
	t.Logf("all jobs succeeded %v after the load stopped", time.Since(waitStart).Round(time.Millisecond))

	// Every server holds every acknowledged job exactly once, finished.
	ftWaitCaughtUp(t, c)
	tried := map[string]bool{}
	for _, a := range attempts {
		tried[a.ID] = true
	}
	for _, s := range c.Servers {
		jobs := ftListJobs(t, s, project, true)
		seen := map[string]int{}
		for _, j := range jobs {
			seen[j.Id]++
		}
		var dup, unknown, missing []string
		for id, n := range seen {
			if n > 1 {
				dup = append(dup, fmt.Sprintf("%s x%d", id, n))
			}
			if !tried[id] {
				unknown = append(unknown, id)
			}
		}
		for _, id := range acked {
			if seen[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(dup) > 0 || len(unknown) > 0 || len(missing) > 0 {
			t.Errorf("%s lists %d jobs: %d acknowledged jobs missing%s\n%d listed twice%s\n%d never submitted%s",
				s.Name(), len(jobs), len(missing), ftFirstN(missing, 10), len(dup), ftFirstN(dup, 10), len(unknown), ftFirstN(unknown, 10))
		}
		errs := ftEach(acked, 8, func(id string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			resp, err := s.Client().Jobs.GetJob(ctx, connect.NewRequest(&pb.GetJobRequest{Id: id, Stale: true}))
			switch {
			case err != nil:
				return fmt.Errorf("GetJob %s: %v", id, err)
			case resp.Msg.Job.Status != rpc.JobSucceeded:
				return fmt.Errorf("job %s is %s (%s)", id, resp.Msg.Job.Status, resp.Msg.Job.StatusReason)
			}
			return nil
		})
		if len(errs) > 0 {
			t.Errorf("stale reads on %s: %d of %d acknowledged jobs wrong:%s", s.Name(), len(errs), len(acked), ftFirstN(errs, 10))
		}
	}
}

var ftCompactRE = regexp.MustCompile(`compacting logs: from=(\d+) to=(\d+)`)

// ftCompactedTo returns the highest index up to which s's Raft log was
// truncated after a snapshot, as its log says.
func ftCompactedTo(s *testcluster.Server) uint64 {
	var top uint64
	for _, m := range ftCompactRE.FindAllStringSubmatch(s.Logs(), -1) {
		if n, err := strconv.ParseUint(m[2], 10, 64); err == nil && n > top {
			top = n
		}
	}
	return top
}

// A follower that was down while the others moved on by more than the
// trailing logs they keep after a snapshot can only catch up by installing a
// snapshot. It must, and then serve exactly what the others serve.
//
// The servers snapshot every 64 entries, keep 32 behind a snapshot and
// check every 200ms (server config below), so a few thousand jobs (which
// concurrent submits share log entries for) put the follower far enough
// behind.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	e2e(t)
	const (
		project = "catch-up"
		jobs    = 3000
		// Every cancelEvery-th job is canceled, so the state holds more
		// than one status to compare.
		cancelEvery = 50
	)
	raftCfg := filepath.Join(t.TempDir(), "raft.hcl")
	if err := os.WriteFile(raftCfg, []byte("server {\n  raft_snapshot_threshold = 64\n  raft_trailing_logs = 32\n  raft_snapshot_interval = \"200ms\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "cu", RaftMultiplier: 1, LogLevel: "info", ExtraArgs: []string{"-config", raftCfg}})
	ftKeepLogs(t, c)
	leader := c.WaitForLeader(ftTimeout)
	follower := ftOthers(c, leader)[0]
	// The follower's log cannot reach past what any server has applied
	// by much: what a leader appends commits within a heartbeat or two.
	// The margin covers entries in flight at the kill.
	var behind uint64
	for _, s := range c.Servers {
		st, err := s.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		behind = max(behind, st.LastIndex)
	}
	behind += 100
	follower.Kill()
	live := ftOthers(c, follower)
	client := ftClient(t, live...)

	start := time.Now()
	load := testcluster.StartLoad(t, client, testcluster.LoadOptions{
		Source:  testcluster.NoopProject(project, 0),
		Workers: 64,
		Count:   jobs,
	})
	load.Wait()
	acked := load.Acked()
	if ab := load.Abandoned(); len(ab) > 0 {
		t.Fatalf("%d submits never acknowledged:%s", len(ab), ftFirstN(ab, 10))
	}
	var toCancel []string
	for i, id := range acked {
		if i%cancelEvery == 0 {
			toCancel = append(toCancel, id)
		}
	}
	if errs := ftEach(toCancel, 16, func(id string) error {
		// Until it is not refused as unavailable, however long that takes.
		return testwait.Poll(context.Background(), testwait.Backoff{Min: 100 * time.Millisecond, Max: 100 * time.Millisecond}, func() (bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := client.Jobs.CancelJob(ctx, connect.NewRequest(&pb.CancelJobRequest{Id: id, Reason: "test"}))
			cancel()
			if err == nil {
				return true, nil
			}
			if !testcluster.IsUnavailable(err) {
				return false, testwait.Abort(err)
			}
			return false, err
		})
	}); len(errs) > 0 {
		t.Fatalf("canceling: %s", ftFirstN(errs, 10))
	}
	t.Logf("%d jobs submitted and %d canceled in %v (%.0f jobs/s) while %s was down at (about) index %d; failed attempts: %v",
		len(acked), len(toCancel), time.Since(start).Round(time.Millisecond), float64(len(acked))/time.Since(start).Seconds(),
		follower.Name(), behind-100, load.ErrorsBy())

	// Wait until the live servers have snapshotted and dropped the entries
	// the follower lacks: then nothing but a snapshot can bring it back.
	waitStart := time.Now()
	testcluster.WaitFor(t, 3*time.Minute, func() (bool, string) {
		var views []string
		done := true
		for _, s := range live {
			top := ftCompactedTo(s)
			if top <= behind+1 {
				done = false
			}
			views = append(views, fmt.Sprintf("%s truncated its log up to %d", s.Name(), top))
		}
		return done, fmt.Sprintf("want both past %d (the follower's index): %s", behind+1, strings.Join(views, "; "))
	})
	t.Logf("the live servers truncated their logs past the follower's index %v after the load", time.Since(waitStart).Round(time.Millisecond))

	restarted := time.Now()
	follower.Restart()
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		return strings.Contains(follower.Logs(), "Installed remote snapshot"),
			follower.Name() + " has not installed a snapshot from the leader; log tail:\n" + follower.Tail(15)
	})
	ftWaitCaughtUp(t, c)
	t.Logf("%s installed a snapshot and caught up %v after its restart", follower.Name(), time.Since(restarted).Round(time.Millisecond))

	want := map[string]uint64{rpc.JobPending: uint64(len(acked) - len(toCancel)), rpc.JobCanceled: uint64(len(toCancel))}
	for _, s := range c.Servers {
		got, err := ftCounts(s, project, true)
		if err != nil {
			t.Fatalf("counting on %s: %v", s.Name(), err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s counts %v jobs by status; want %v", s.Name(), got, want)
		}
	}
	// Not just the counts: the jobs themselves read back the same
	// everywhere, indexes included.
	sample := append(slices.Clone(acked[:20]), acked[len(acked)-20:]...)
	sample = append(sample, toCancel[:10]...)
	for _, id := range sample {
		var first *pb.Job
		for _, s := range c.Servers {
			resp, err := s.Client().Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: id, Stale: true}))
			if err != nil {
				t.Errorf("GetJob %s on %s: %v", id, s.Name(), err)
				continue
			}
			if first == nil {
				first = resp.Msg.Job
			} else if !proto.Equal(first, resp.Msg.Job) {
				t.Errorf("job %s differs on %s:\n%s\nvs\n%s", id, s.Name(), protojson.Format(resp.Msg.Job), protojson.Format(first))
			}
		}
	}
}

var ftInspectRE = regexp.MustCompile(`(?m)^(Jobs|Log chunks|Projects|Runners)\s+(\d+)$`)

// A snapshot saved from one cluster and restored into a fresh one brings
// every job (status, exit code, log), stored project and runner profile
// with it, and the new cluster goes on taking work.
func TestSnapshotSaveRestoreIntoFreshCluster(t *testing.T) {
	e2e(t)
	a := testcluster.StartServer(t, testcluster.ServerOptions{Name: "snap-a", Runner: true, Capacity: 8})
	stored := writeFile(t, "outpost.hcl", `project = "stored"

job "ok" {
  step "one" {
    script = "echo line-1; echo line-2; echo warn-1 >&2"
  }
  step "two" {
    command = ["echo", "done"]
  }
}

job "bad" {
  step "boom" {
    script = "echo about to fail; exit 3"
  }
}
`)
	// A job for the profile's labels, which no runner has: it stays
	// pending, and must still be pending (with its reason) after a restore.
	targeted := writeFile(t, "targeted.hcl", `project = "targeted"

job "t" {
  runner { profile = "p" }
  step "s" {
    command = ["/bin/true"]
  }
}
`)
	cliOK(t, a, "project", "apply", "-file", stored)
	cliOK(t, a, "runner", "profile", "set", "-name", "p", "-target-label", "a=b")
	var ids []string
	for _, run := range []struct {
		job  string
		code int
	}{{"ok", 0}, {"ok", 0}, {"bad", 3}} {
		r := cli(t, a, "job", "run", "-project", "stored", run.job)
		if r.code != run.code {
			t.Fatalf("want exit %d: %v", run.code, r)
		}
		ids = append(ids, queuedID(t, r))
	}
	pending := runDetached(t, a, "-file", targeted, "t")
	ids = append(ids, pending)
	waitJob(t, a, pending, "pending with a reason naming the labels", func(j *pb.Job) bool {
		return j.Status == rpc.JobPending && strings.Contains(j.StatusReason, "a=b")
	})

	type jobRecord struct {
		job  *pb.Job
		logs []*pb.LogChunk
	}
	before := map[string]jobRecord{}
	for _, id := range ids {
		j, err := getJob(context.Background(), a, id)
		if err != nil {
			t.Fatalf("GetJob %s: %v", id, err)
		}
		before[id] = jobRecord{job: j, logs: logChunks(t, a, id)}
	}
	projects := func(s *testcluster.Server) []*pb.Project {
		t.Helper()
		ps, err := rpc.AllProjects(context.Background(), s.Client().Projects, false)
		if err != nil {
			t.Fatalf("ListProjects on %s: %v", s.Name(), err)
		}
		return ps
	}
	profiles := func(s *testcluster.Server) []*pb.RunnerProfile {
		t.Helper()
		resp, err := s.Client().Projects.ListProfiles(context.Background(), connect.NewRequest(&pb.ListProfilesRequest{}))
		if err != nil {
			t.Fatalf("ListProfiles on %s: %v", s.Name(), err)
		}
		return resp.Msg.Profiles
	}
	wantProjects, wantProfiles := projects(a), profiles(a)
	if len(wantProjects) != 1 || len(wantProfiles) != 1 {
		t.Fatalf("cluster A holds %d projects and %d profiles, want 1 and 1", len(wantProjects), len(wantProfiles))
	}

	file := filepath.Join(t.TempDir(), "backup.snap")
	cliOK(t, a, "operator", "snapshot", "save", file)
	insp := cliOK(t, a, "operator", "snapshot", "inspect", file)
	counts := map[string]int{}
	for _, m := range ftInspectRE.FindAllStringSubmatch(insp.stdout, -1) {
		counts[m[1]], _ = strconv.Atoi(m[2])
	}
	if counts["Jobs"] != len(ids) || counts["Projects"] != 1 || counts["Log chunks"] == 0 || counts["Runners"] != 1 {
		t.Errorf("snapshot inspect: want %d jobs, some log chunks, 1 project, 1 runner: %v", len(ids), insp)
	}
	t.Logf("snapshot inspect:\n%s", insp.stdout)
	// Cluster A is done with; it must play no part in what follows.
	a.Kill()

	b := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "snap-b", RaftMultiplier: 1, Runner: true, Capacity: 8})
	ftKeepLogs(t, b)
	// Through a follower: the restore is forwarded to the leader.
	via := ftOthers(b, b.WaitForLeader(ftTimeout))[0]
	r := cliOK(t, via, "operator", "snapshot", "restore", file)
	restoredAt := time.Now()
	t.Logf("snapshot restore: %s", strings.TrimSpace(r.stdout))
	if !strings.Contains(r.stdout, fmt.Sprintf("restored %d jobs", len(ids))) {
		t.Errorf("restore does not report %d jobs: %v", len(ids), r)
	}
	// The ACL tables came with the snapshot: B now knows A's tokens, and
	// its own bootstrap token is gone.
	b.UseToken(a.Token())

	// The same jobs, logs, projects and profiles on every server of B.
	ftWaitCaughtUp(t, b)
	for _, s := range b.Servers {
		for _, id := range ids {
			resp, err := s.Client().Jobs.GetJob(context.Background(), connect.NewRequest(&pb.GetJobRequest{Id: id, Stale: true}))
			if err != nil {
				t.Errorf("%s: GetJob %s: %v", s.Name(), id, err)
				continue
			}
			got, want := resp.Msg.Job, before[id].job
			if id == pending {
				// B's dispatcher may restate why it waits; what it is
				// waiting for must not change.
				if got.Status != rpc.JobPending || !proto.Equal(got.Steps[0], want.Steps[0]) || fmt.Sprint(got.TargetLabels) != fmt.Sprint(want.TargetLabels) {
					t.Errorf("%s: pending job %s after restore:\n%s\nbefore:\n%s", s.Name(), id, protojson.Format(got), protojson.Format(want))
				}
				continue
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s: job %s after restore:\n%s\nbefore:\n%s", s.Name(), id, protojson.Format(got), protojson.Format(want))
			}
		}
		for i, p := range projects(s) {
			if i >= len(wantProjects) || !proto.Equal(p, wantProjects[i]) {
				t.Errorf("%s: project after restore: %v; want %v", s.Name(), p, wantProjects)
			}
		}
		for i, p := range profiles(s) {
			if i >= len(wantProfiles) || !proto.Equal(p, wantProfiles[i]) {
				t.Errorf("%s: profile after restore: %v; want %v", s.Name(), p, wantProfiles)
			}
		}
		if n := len(projects(s)); n != len(wantProjects) {
			t.Errorf("%s: %d projects after restore, want %d", s.Name(), n, len(wantProjects))
		}
		if n := len(profiles(s)); n != len(wantProfiles) {
			t.Errorf("%s: %d profiles after restore, want %d", s.Name(), n, len(wantProfiles))
		}
	}
	for _, s := range b.Servers {
		for _, id := range ids {
			if got, want := logText(logChunks(t, s, id)), logText(before[id].logs); got != want {
				t.Errorf("%s: log of job %s after restore:\n%sbefore:\n%s", s.Name(), id, got, want)
			}
		}
		if n := len(ftListJobs(t, s, "", false)); n != len(ids) {
			t.Errorf("%s lists %d jobs after restore, want %d", s.Name(), n, len(ids))
		}
	}
	for _, s := range b.Servers {
		logs := cliOK(t, s, "job", "logs", ids[0])
		if !strings.Contains(logs.stdout, "line-2") || !strings.Contains(logs.stderr, "warn-1") {
			t.Errorf("%s: job logs after restore lacks the job's lines: %v", s.Name(), logs)
		}
	}

	// B goes on working: its runners, absent from the restored state,
	// register again, and a new job of the restored project runs.
	for i, s := range b.Servers {
		id := runDetached(t, s, "-project", "stored", "ok")
		if j := waitFinished(t, s, id); j.Status != rpc.JobSucceeded {
			t.Errorf("new job %s on %s after the restore is %s (%s)", id, s.Name(), j.Status, j.StatusReason)
		} else if i == 0 {
			t.Logf("the first new job on the restored cluster finished %v after the restore", time.Since(restoredAt).Round(time.Millisecond))
		}
		if text := logText(logChunks(t, s, id)); !strings.Contains(text, "stdout: line-1") {
			t.Errorf("new job %s: log lacks its output:\n%s", id, text)
		}
	}
}

// With two of three servers dead there is no quorum: a write fails, in
// bounded time, with an error that says so and that clients know to retry;
// a stale read still answers from the survivor; and once the servers are
// back the write can be retried, with the same id, and takes effect once.
func TestQuorumLoss(t *testing.T) {
	e2e(t)
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "ql", RaftMultiplier: 1})
	ftKeepLogs(t, c)
	source := testcluster.NoopProject("quorum", 0)
	submit := func(ctx context.Context, cl *rpc.Client, id string) error {
		_, err := cl.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{Id: id, ProjectSource: source, Job: "noop", Driver: "noop"}))
		return err
	}
	all := ftClient(t, c.Servers...)
	var before []string
	for range 3 {
		id := rpc.NewJobID()
		if err := submit(context.Background(), all, id); err != nil {
			t.Fatalf("submit on a healthy cluster: %v", err)
		}
		before = append(before, id)
	}

	// The leader survives: the case where a server that led a moment ago
	// must not take a write it cannot replicate.
	survivor := c.WaitForLeader(ftTimeout)
	ftWaitCaughtUp(t, c)
	dead := ftOthers(c, survivor)
	for _, s := range dead {
		s.Kill()
	}

	id := rpc.NewJobID()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	start := time.Now()
	err := submit(ctx, survivor.Client(), id)
	took := time.Since(start)
	cancel()
	leaderWord := regexp.MustCompile(`(?i)leader|quorum`)
	switch {
	case err == nil:
		t.Fatalf("a write succeeded on %s with two of three servers dead", survivor.Name())
	case connect.CodeOf(err) != connect.CodeUnavailable || !leaderWord.MatchString(err.Error()):
		t.Errorf("a write without quorum failed after %v with %v; want Unavailable, saying there is no leader or quorum", took, err)
	default:
		t.Logf("a write without quorum failed after %v: %v", took.Round(time.Millisecond), err)
	}
	// A consistent read cannot be served either; a stale one can.
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	_, err = survivor.Client().Jobs.ListJobs(ctx, connect.NewRequest(&pb.ListJobsRequest{Project: "quorum"}))
	cancel()
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("a consistent read without quorum: %v; want Unavailable", err)
	}
	jobs := ftListJobs(t, survivor, "quorum", true)
	for _, id := range before {
		if !slices.ContainsFunc(jobs, func(j *pb.Job) bool { return j.Id == id }) {
			t.Errorf("stale ListJobs on %s lacks job %s", survivor.Name(), id)
		}
	}
	list := cliOK(t, survivor, "job", "list", "-stale", "-project", "quorum")
	for _, id := range before {
		if !strings.Contains(list.stdout, id) {
			t.Errorf("job list -stale lacks %s: %v", id, list)
		}
	}
	status := cliOK(t, survivor, "job", "status", "-stale", before[0])
	if !strings.Contains(status.stdout, before[0]) {
		t.Errorf("job status -stale does not show the job: %v", status)
	}
	peers := cliOK(t, survivor, "operator", "raft", "list-peers", "-stale")
	for _, s := range c.Servers {
		if !strings.Contains(peers.stdout, s.Name()) {
			t.Errorf("list-peers -stale lacks %s: %v", s.Name(), peers)
		}
	}

	restarted := time.Now()
	for _, s := range dead {
		s.Restart()
	}
	// The client retries the failed write with its id: it takes effect
	// once, whether or not the failed try left an entry behind.
	var firstOK time.Duration
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := submit(ctx, all, id); err != nil {
			return false, "retried submit: " + err.Error()
		}
		firstOK = time.Since(restarted)
		return true, ""
	})
	t.Logf("writes accepted again %v after the restarts began", firstOK.Round(time.Millisecond))
	if err := submit(context.Background(), all, rpc.NewJobID()); err != nil {
		t.Errorf("a new write after the quorum is back: %v", err)
	}
	ftWaitCaughtUp(t, c)
	for _, s := range c.Servers {
		jobs := ftListJobs(t, s, "quorum", true)
		n := 0
		for _, j := range jobs {
			if j.Id == id {
				n++
			}
		}
		if n != 1 || len(jobs) != len(before)+2 {
			t.Errorf("%s holds %d jobs, job %s %d times; want %d jobs, it once", s.Name(), len(jobs), id, n, len(before)+2)
		}
	}
}

// A server stopped with SIGTERM leaves the Raft configuration by itself; a
// stopped leader hands over first; a server that crashed stays a voter
// (it may come back) until an operator removes it.
func TestGracefulLeaveAndRemovePeer(t *testing.T) {
	e2e(t)
	c := testcluster.StartCluster(t, 3, testcluster.ServerOptions{Name: "gl", RaftMultiplier: 1})
	ftKeepLogs(t, c)
	all := ftClient(t, c.Servers...)
	write := func(when string) {
		t.Helper()
		testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := all.Jobs.SubmitJob(ctx, connect.NewRequest(&pb.SubmitJobRequest{
				Id: rpc.NewJobID(), ProjectSource: testcluster.NoopProject("leave", 0), Job: "noop", Driver: "noop",
			}))
			if err != nil {
				return false, when + ": submit: " + err.Error()
			}
			return true, ""
		})
	}
	write("at start")

	// A follower stopped gracefully takes itself out of Raft. Right after
	// the cluster formed, as an operator scaling down a fresh cluster would.
	leader := c.WaitForLeader(ftTimeout)
	f := ftOthers(c, leader)[0]
	start := time.Now()
	if err := f.Stop(); err != nil {
		t.Errorf("graceful stop of follower %s: %v", f.Name(), err)
	}
	// Its leave waits (up to 10s) for the leader to remove it, so by now
	// it should be gone; the extra time is headroom for a loaded machine.
	if ok, msg := ftPeersBecome(c, 30*time.Second, ftOthers(c, f)...); ok {
		t.Logf("follower %s stopped and out of the peers %v after SIGTERM", f.Name(), time.Since(start).Round(time.Millisecond))
		peers := cliOK(t, ftLive(c)[0], "operator", "raft", "list-peers")
		if strings.Contains(peers.stdout, f.Name()) || strings.Count(strings.TrimSpace(peers.stdout), "\n") != 2 {
			t.Errorf("list-peers after %s left: want 2 peers without it: %v", f.Name(), peers)
		}
	} else {
		var seen []string
		for _, s := range ftOthers(c, f) {
			for _, line := range strings.Split(s.Logs(), "\n") {
				if strings.Contains(line, "member gone: name="+f.Name()) {
					seen = append(seen, s.Name()+": "+line)
				}
			}
		}
		t.Errorf("%s was stopped with SIGTERM %v ago and left gossip, but is still a raft peer: %s\nhow the others saw it go:%s",
			f.Name(), time.Since(start).Round(time.Millisecond), msg, ftFirstN(seen, 4))
		// Go on with the rest, as an operator would.
		cliOK(t, ftLive(c)[0], "operator", "raft", "remove-peer", f.Name())
		ftWaitPeers(t, c, ftOthers(c, f)...)
	}
	write("with the follower gone")
	// Started again on its state, it is added back.
	f.Restart()
	ftWaitPeers(t, c, c.Servers...)

	// The leader stopped gracefully hands over and leaves.
	leader = c.WaitForLeader(ftTimeout)
	start = time.Now()
	if err := leader.Stop(); err != nil {
		t.Errorf("graceful stop of leader %s: %v", leader.Name(), err)
	}
	stopped := time.Since(start)
	next, elected := ftElect(t, c, leader, start)
	ftWaitPeers(t, c, ftOthers(c, leader)...)
	handed := strings.Contains(leader.Logs(), "handed over leadership")
	t.Logf("leader %s stopped in %v (log says it handed over: %v); %s leads %v after the SIGTERM, and the peers no longer list %s",
		leader.Name(), stopped.Round(time.Millisecond), handed, next.Name(), elected.Round(time.Millisecond), leader.Name())
	write("with the old leader gone")
	leader.Restart()
	ftWaitPeers(t, c, c.Servers...)

	// A crashed follower stays a voter, even once gossip has declared it
	// dead, until an operator removes it.
	leader = c.WaitForLeader(ftTimeout)
	victim := ftOthers(c, leader)[0]
	victim.Kill()
	testcluster.WaitFor(t, ftTimeout, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := leader.Client().Operator.Members(ctx, connect.NewRequest(&pb.MembersRequest{}))
		if err != nil {
			return false, err.Error()
		}
		for _, m := range resp.Msg.Members {
			if m.Name == victim.Name() {
				return m.Status == "dead" || m.Status == "failed", fmt.Sprintf("gossip says %s is %s", m.Name, m.Status)
			}
		}
		return true, "" // already forgotten by gossip: as good as dead
	})
	if got := ftPeersNow(t, c); len(got) != 3 {
		t.Errorf("raft peers once gossip declared %s dead: %v; want all three (a crashed server stays a voter)", victim.Name(), got)
	}
	// Through a follower: removal is forwarded to the leader.
	var via *testcluster.Server
	for _, s := range ftLive(c) {
		if s != leader {
			via = s
		}
	}
	r := cliOK(t, via, "operator", "raft", "remove-peer", victim.Name())
	if !strings.Contains(r.stdout, victim.Name()) {
		t.Errorf("remove-peer does not name the peer: %v", r)
	}
	ftWaitPeers(t, c, ftLive(c)...)
	peers := cliOK(t, via, "operator", "raft", "list-peers")
	if strings.Contains(peers.stdout, victim.Name()) {
		t.Errorf("list-peers still lists the removed %s: %v", victim.Name(), peers)
	}
	write("after the removal")
}
