package runner

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
	"github.com/outpost-run/outpost/runner/outbox"
)

// Config describes one runner.
type Config struct {
	// ID is optional: by default the runner keeps the id it made at its
	// first start in DataDir.
	ID       string
	Name     string
	Labels   map[string]string
	Capacity int
	// Servers are tried in turn; any server will do.
	Servers []string
	// DataDir holds the outbox and the jobs' working directories. Empty
	// means an in-memory outbox and a temporary work directory.
	DataDir string
	Token   string
	Version string
	Logger  hclog.Logger
	// HTTPClient is optional; it must speak HTTP/2 (see rpc.NewHTTPClient).
	HTTPClient *http.Client
	// BaseEnv is the environment jobs start from; nil means os.Environ().
	BaseEnv []string
	// Launcher is the argv prefix that starts on_demand steps under
	// resource limits (see executor.Isolation); nil means os.Executable()
	// with the executor-launch subcommand.
	Launcher []string
	// OnRegistered, if set, is told the servers' gossip addresses each time
	// the runner registers, so its agent can join the pool.
	OnRegistered func(gossipAddrs []string)
}

// Runner is a running runner agent.
type Runner struct {
	cfg     Config
	id      *Identity
	logger  hclog.Logger
	outbox  *outbox.Outbox
	workDir string
	hc      *http.Client

	// jobUIDs numbers the user ids of on_demand jobs.
	jobUIDs atomic.Uint32

	mu      sync.Mutex
	jobs    map[string]*execution
	session *session // nil while disconnected
	status  string
	wg      sync.WaitGroup

	// Idle memory trim (memory.go), guarded by mu.
	trimAfter time.Duration
	trimTimer *time.Timer
	trimGen   uint64
	trimFn    func() // nil: debug.FreeOSMemory
	closed    bool
}

// New prepares a runner; Run connects it.
func New(cfg Config) (*Runner, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = []string{rpc.DefaultAddress}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = rpc.NewHTTPClient()
	}
	if cfg.Launcher == nil {
		if exe, err := os.Executable(); err == nil {
			cfg.Launcher = []string{exe, executor.LauncherCommand}
		}
	}
	id, err := LoadIdentity(cfg.DataDir, cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.ID = id.ID
	r := &Runner{cfg: cfg, id: id, logger: cfg.Logger.Named("runner").With("runner", id.ID), hc: cfg.HTTPClient, jobs: map[string]*execution{}}
	// Runners on one machine start their job user ids at different places.
	h := fnv.New32a()
	h.Write([]byte(id.ID))
	r.jobUIDs.Store(h.Sum32())
	if cfg.DataDir == "" {
		r.outbox = outbox.Memory()
		if r.workDir, err = os.MkdirTemp("", "outpost-runner-"); err != nil {
			return nil, fmt.Errorf("runner: work dir: %w", err)
		}
	} else {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("runner: data dir: %w", err)
		}
		if r.outbox, err = outbox.Open(filepath.Join(cfg.DataDir, "outbox.db")); err != nil {
			return nil, err
		}
		r.workDir = filepath.Join(cfg.DataDir, "work")
		if err := os.MkdirAll(r.workDir, 0o700); err != nil {
			return nil, fmt.Errorf("runner: work dir: %w", err)
		}
	}
	return r, nil
}

// ID returns the runner's id.
func (r *Runner) ID() string { return r.cfg.ID }

// Run keeps the runner connected until ctx ends, then cancels running jobs,
// waits for them to report (into the outbox if no server takes it) and
// returns.
func (r *Runner) Run(ctx context.Context) error {
	defer r.close()
	backoff := newBackoff(100*time.Millisecond, 10*time.Second)
	for i := 0; ctx.Err() == nil; i++ {
		server := r.cfg.Servers[i%len(r.cfg.Servers)]
		start := time.Now()
		err := r.connect(ctx, server)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			backoff.reset()
		}
		wait := backoff.next()
		if connect.CodeOf(err) == connect.CodePermissionDenied {
			// Refused (rejected, or wrong secret): what runs here can no
			// longer be reported, so stop it. An operator must act; keep
			// asking, slowly, so the runner recovers once they have.
			wait = 30 * time.Second
			r.cancelAll()
		}
		r.logger.Warn("stream to server ended; reconnecting", "server", server, "error", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	r.cancelAll()
	r.wg.Wait()
	return nil
}

func (r *Runner) cancelAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.jobs {
		e.cancel()
	}
}

func (r *Runner) close() {
	r.mu.Lock()
	r.stopTrim()
	r.mu.Unlock()
	if err := r.outbox.Close(); err != nil {
		r.logger.Warn("closing outbox", "error", err)
	}
	if r.cfg.DataDir == "" {
		os.RemoveAll(r.workDir)
	}
	// Empty once every on_demand job has cleaned up after itself.
	_ = os.Remove(filepath.Join(os.TempDir(), "outpost-on-demand-"+r.cfg.ID))
}

// running lists the jobs in flight, for Register and heartbeats.
func (r *Runner) running() []*pb.RunningJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*pb.RunningJob, 0, len(r.jobs))
	for _, e := range r.jobs {
		out = append(out, &pb.RunningJob{JobId: e.job.Id, Lease: e.job.Lease})
	}
	return out
}

// send writes to the current stream, if there is one.
func (r *Runner) send(m *pb.RunnerMessage) error {
	r.mu.Lock()
	s := r.session
	r.mu.Unlock()
	if s == nil {
		return errNotConnected
	}
	return s.send(m)
}

var errNotConnected = errors.New("not connected to a server")

// session is one open stream.
type session struct {
	stream *connect.BidiStreamForClient[pb.RunnerMessage, pb.ServerMessage]
	mu     sync.Mutex
}

func (s *session) send(m *pb.RunnerMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(m)
}

// connect runs one session: register, resend the outbox, then serve
// assignments until the stream breaks.
func (r *Runner) connect(ctx context.Context, server string) error {
	client, err := rpc.NewClient(server, r.hc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := client.Runners.Connect(ctx)
	// A canceled context does not always wake a blocked Receive on an
	// HTTP/2 stream; closing the response does, so shutdown is prompt.
	go func() {
		<-ctx.Done()
		_ = stream.CloseResponse()
	}()
	if r.cfg.Token != "" {
		stream.RequestHeader().Set("Authorization", "Bearer "+r.cfg.Token)
	}
	unacked, err := r.outbox.List()
	if err != nil {
		return err
	}
	reg := &pb.Register{
		RunnerId: r.cfg.ID,
		Name:     r.cfg.Name,
		Labels:   r.cfg.Labels,
		Capacity: uint32(r.cfg.Capacity),
		Version:  r.cfg.Version,
		Token:    r.cfg.Token,
		Secret:   r.id.Secret,
		Running:  r.running(),
	}
	for _, f := range unacked {
		reg.Unacked = append(reg.Unacked, &pb.RunningJob{JobId: f.JobId, Lease: f.Lease})
	}
	s := &session{stream: stream}
	if err := s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Register{Register: reg}}); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	first, err := stream.Receive()
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	registered := first.GetRegistered()
	if registered == nil {
		return fmt.Errorf("register: server answered %T", first.Msg)
	}
	r.mu.Lock()
	r.session = s
	changed := r.status != registered.Status
	r.status = registered.Status
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.session = nil
		r.mu.Unlock()
		stream.CloseRequest()
	}()
	r.registered(server, registered, changed)
	for _, f := range unacked {
		if err := s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: f}}); err != nil {
			return err
		}
	}
	interval := registered.HeartbeatInterval.AsDuration()
	if interval <= 0 {
		interval = rpc.HeartbeatInterval
	}
	go r.heartbeat(ctx, s, interval)
	go r.resendOutbox(ctx, s)
	for {
		msg, err := stream.Receive()
		if err != nil {
			return err
		}
		switch m := msg.Msg.(type) {
		case *pb.ServerMessage_Assign:
			r.start(m.Assign.Job)
		case *pb.ServerMessage_Cancel:
			r.cancelJob(m.Cancel.JobId, m.Cancel.Lease, m.Cancel.Reason)
		case *pb.ServerMessage_Ack:
			r.handleAck(m.Ack)
		case *pb.ServerMessage_Registered:
			r.mu.Lock()
			changed := r.status != m.Registered.Status
			r.status = m.Registered.Status
			r.mu.Unlock()
			r.registered(server, m.Registered, changed)
		}
	}
}

// registered reports a registration answer and passes on gossip addresses.
func (r *Runner) registered(server string, m *pb.Registered, changed bool) {
	switch {
	case !changed:
		r.logger.Debug("connected", "server", server, "status", m.Status)
	case m.Status == "adopted":
		r.logger.Info("connected and adopted; ready for jobs", "server", server)
	default:
		r.logger.Warn("connected but not adopted: no jobs will come", "server", server, "status", m.Status, "reason", m.StatusReason)
	}
	if r.cfg.OnRegistered != nil && len(m.GossipAddrs) > 0 {
		r.cfg.OnRegistered(m.GossipAddrs)
	}
}

// Status is the adoption status the server last gave, "" before the first
// registration.
func (r *Runner) Status() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Runner) heartbeat(ctx context.Context, s *session, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Running: r.running()}}}); err != nil {
				return
			}
		}
	}
}

// resendEvery is how often results still in the outbox are sent again
// while connected: a server may have refused one for a moment (an election)
// without the stream breaking.
const resendEvery = 3 * time.Second

func (r *Runner) resendOutbox(ctx context.Context, s *session) {
	t := time.NewTicker(resendEvery)
	defer t.Stop()
	seen := map[string]int{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pending, err := r.outbox.List()
		if err != nil {
			r.logger.Warn("reading outbox", "error", err)
			continue
		}
		next := map[string]int{}
		for _, f := range pending {
			key := fmt.Sprintf("%s/%d", f.JobId, f.Lease)
			// Send what was already waiting at the previous tick: a
			// result sent a moment ago has its answer on the way.
			if next[key] = seen[key] + 1; next[key] < 2 {
				continue
			}
			if err := s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: f}}); err != nil {
				return
			}
		}
		seen = next
	}
}

func (r *Runner) handleAck(a *pb.Ack) {
	if a.Stale {
		// The attempt is no longer ours: stop it if it still runs, and a
		// stored result for it has nowhere to go.
		r.cancelJob(a.JobId, a.Lease, "lease is stale: "+a.Error)
	}
	if a.Kind != "finished" {
		return
	}
	if a.Error != "" && !a.Stale {
		r.logger.Warn("server could not record result yet; it stays in the outbox", "job", a.JobId, "error", a.Error)
		return
	}
	if err := r.outbox.Delete(a.JobId, a.Lease); err != nil {
		r.logger.Error("removing delivered result from outbox", "job", a.JobId, "error", err)
	}
}

// backoff grows exponentially with full jitter, so runners that lost the
// same server do not all come back in the same instant.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) reset() { b.cur = 0 }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}
