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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/runner/executor"
	"github.com/outpost-run/outpost/runner/outbox"
	"github.com/outpost-run/outpost/runner/watchdog"
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
	// OnKeyring, if set, is given the cluster's gossip keyring each time
	// a server sends it: at register and whenever it changes.
	OnKeyring func(keys []string, primary string)
	// FixedServers keeps the runner on Servers: it does not learn the
	// cluster's other servers (a runner inside a server agent, trusted by
	// that server alone).
	FixedServers bool
	// WatchdogCommand starts the runner's watchdog (see runner/watchdog);
	// nil means os.Executable() with the runner-watchdog subcommand.
	WatchdogCommand []string
	// Containment forces how jobs' processes are contained (tests);
	// executor.ContainmentAuto picks the best the host allows.
	Containment executor.Containment
	// Logs bound each attempt's log; the zero value means the defaults.
	Logs LogLimits
}

// Runner is a running runner agent.
type Runner struct {
	cfg     Config
	id      *Identity
	logger  hclog.Logger
	outbox  *outbox.Outbox
	workDir string
	hc      *http.Client
	servers *serverList
	lease   *leaseKeeper
	// host contains jobs' processes and watchdog kills them if this
	// process cannot (frozen, dead); both are set up by Run.
	host     *executor.Host
	watchdog atomic.Pointer[watchdog.Watchdog]

	// jobUIDs numbers the user ids of on_demand jobs.
	jobUIDs atomic.Uint32
	// seenLease is the highest lease of any assignment received, for
	// heartbeats.
	seenLease atomic.Uint64

	mu sync.Mutex
	// jobs holds every attempt this runner holds, by job and lease: a job
	// handed back to this runner under a new lease may briefly be held
	// twice while the old attempt ends.
	jobs    map[jobKey]*execution
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

// jobKey names one attempt: a job under one lease.
type jobKey struct {
	id    string
	lease uint64
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
	if cfg.Logs == (LogLimits{}) {
		cfg.Logs = DefaultLogLimits()
	}
	if err := cfg.Logs.Validate(); err != nil {
		return nil, fmt.Errorf("runner: %w", err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = rpc.NewHTTPClient()
	}
	if exe, err := os.Executable(); err == nil {
		if cfg.Launcher == nil {
			cfg.Launcher = []string{exe, executor.LauncherCommand}
		}
		if cfg.WatchdogCommand == nil {
			cfg.WatchdogCommand = []string{exe, watchdog.Command}
		}
	}
	fixedID := cfg.ID != ""
	id, err := LoadIdentity(cfg.DataDir, cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.ID = id.ID
	r := &Runner{cfg: cfg, id: id, logger: cfg.Logger.Named("runner").With("runner", id.ID), hc: cfg.HTTPClient, jobs: map[jobKey]*execution{}}
	r.servers = newServerList(cfg.Servers, cfg.DataDir, !cfg.FixedServers, r.logger)
	r.lease = newLeaseKeeper(rpc.DefaultLeasePeriod, r.leaseLapsed, func(deadline time.Time) {
		if w := r.watchdog.Load(); w != nil {
			if err := w.SetDeadline(deadline); err != nil {
				r.logger.Error("telling the watchdog the lease deadline", "error", err)
			}
		}
	})
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
		// With the outbox open (its lock held), what an earlier life of
		// this runner left behind is this runner's to remove (sweep_dirs.go).
		n := sweepJobDirs(r.workDir, r.logger)
		if !fixedID {
			// Only an id made in this data dir is surely no other runner's:
			// an id given in the config (NAME-runner in a server agent)
			// may be shared by agents on one machine.
			n += sweepOnDemandDirs(r.onDemandRoot(), r.logger)
		}
		if n > 0 {
			r.logger.Info("removed the job directories an earlier run of this runner left behind", "count", n, "dir", r.workDir)
		}
	}
	return r, nil
}

// ID returns the runner's id.
func (r *Runner) ID() string { return r.cfg.ID }

// Run keeps the runner connected until ctx ends, then cancels running jobs,
// waits for them to report (into the outbox if no server takes it) and
// returns. A server that fails, or cannot serve it, is left for the next
// one the runner knows of.
func (r *Runner) Run(ctx context.Context) error {
	r.contain()
	defer r.close()
	backoff := newBackoff(100*time.Millisecond, 10*time.Second)
	// failed counts the servers that failed in a row. Another server is
	// tried at once (after a short jitter): a runner with results to
	// deliver and leases to keep must not sit out a backoff while a
	// healthy server waits. Only when every known server has failed in
	// turn does it back off, exponentially.
	failed := 0
	for ctx.Err() == nil {
		server := r.servers.current()
		registered, err := r.connect(ctx, server)
		if ctx.Err() != nil {
			break
		}
		if registered {
			failed = 0
			backoff.reset()
		}
		failed++
		wait := time.Duration(50+rand.N(200)) * time.Millisecond
		if failed >= r.servers.count() {
			failed = 0
			wait = backoff.next()
		}
		switch connect.CodeOf(err) {
		case connect.CodePermissionDenied:
			// Refused (rejected, or wrong secret): what runs here can no
			// longer be reported, so stop it. An operator must act; keep
			// asking, slowly, so the runner recovers once they have.
			wait = 30 * time.Second
			r.cancelAll()
		case connect.CodeInvalidArgument:
			// The registration itself is refused. `runner agent` checks
			// its settings by the servers' rules at start, so this is a
			// server of another version: retrying fast changes nothing.
			wait = 30 * time.Second
			r.logger.Error("the server refuses this runner's registration; fix the runner's settings (-name, -label, -capacity) and restart it", "server", server, "error", err)
		}
		next := r.servers.next()
		r.logger.Warn("stream to server ended; trying the next server", "server", server, "error", err, "next", next, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	r.cancelAll()
	r.wg.Wait()
	return nil
}

// contain sets up what keeps jobs' processes in check: a cgroup per job
// where the host allows it, and the watchdog that kills them when this
// process can no longer (frozen past its lease, or dead). Without either
// the runner still works, with weaker promises, and says so.
func (r *Runner) contain() {
	opts := executor.HostOptions{Name: r.cfg.ID, Logger: r.logger, Containment: r.cfg.Containment}
	if len(r.cfg.WatchdogCommand) > 0 {
		w, err := watchdog.Start(r.cfg.WatchdogCommand, r.logger.Named("watchdog"))
		if err != nil {
			r.logger.Error("no watchdog: if this runner freezes, its jobs run on after the servers give them away", "error", err)
		} else {
			r.watchdog.Store(w)
			opts.Watchdog = w
			go func() {
				<-w.Done()
				if !r.isClosed() {
					r.logger.Error("the watchdog exited; if this runner freezes, its jobs run on after the servers give them away")
				}
			}()
		}
	}
	host, err := executor.NewHost(opts)
	if err != nil {
		r.logger.Error("jobs run without containment", "error", err)
		return
	}
	r.host = host
}

func (r *Runner) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

func (r *Runner) cancelAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.jobs {
		e.stop(nil)
	}
}

func (r *Runner) close() {
	r.mu.Lock()
	r.stopTrim()
	r.mu.Unlock()
	r.lease.close()
	if r.host != nil {
		if err := r.host.Close(); err != nil {
			r.logger.Warn("removing job cgroups", "error", err)
		}
	}
	if w := r.watchdog.Load(); w != nil {
		if err := w.Close(); err != nil {
			r.logger.Warn("stopping the watchdog", "error", err)
		}
	}
	if err := r.outbox.Close(); err != nil {
		r.logger.Warn("closing outbox", "error", err)
	}
	if r.cfg.DataDir == "" {
		os.RemoveAll(r.workDir)
	}
	// Empty once every on_demand job has cleaned up after itself.
	_ = os.Remove(r.onDemandRoot())
}

// running lists the attempts this runner holds, for Register and
// heartbeats: those running and those waiting to start.
func (r *Runner) running() []*pb.RunningJob {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*pb.RunningJob, 0, len(r.jobs))
	for k := range r.jobs {
		out = append(out, &pb.RunningJob{JobId: k.id, Lease: k.lease})
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

// registerTimeout bounds the wait for a server's answer to Register: a
// frozen or cut-off server must not hold the runner longer than it would
// stay with a server that confirms nothing, within bounds: registering
// may wait out an election.
func registerTimeout(t rpc.LeaseTimings) time.Duration {
	return min(max(t.Move, 3*time.Second), 10*time.Second)
}

// session is one open stream.
type session struct {
	server string
	stream *connect.BidiStreamForClient[pb.RunnerMessage, pb.ServerMessage]
	mu     sync.Mutex // serializes sends

	beatMu sync.Mutex
	seq    uint64
	sent   map[uint64]time.Time // heartbeats awaiting an answer
	// confirmed is when a heartbeat was last confirmed on this stream (or
	// the stream opened); refusal is the last reason given for not.
	confirmed time.Time
	refusal   string
	// window bounds the final log pieces in flight (see sendResult).
	window *logWindow
}

func (s *session) send(m *pb.RunnerMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(m)
}

// beat sends one heartbeat, remembering when.
func (s *session) beat(life, seen uint64, running, unacked []*pb.RunningJob) error {
	s.beatMu.Lock()
	s.seq++
	seq := s.seq
	s.sent[seq] = time.Now()
	// Answers that never came must not pile up.
	for old := range s.sent {
		if old+64 < seq {
			delete(s.sent, old)
		}
	}
	s.beatMu.Unlock()
	return s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Running: running, Unacked: unacked, Seq: seq, SeenLease: seen, Life: life}}})
}

// answered takes the answer to heartbeat seq: when it was sent, if known.
func (s *session) answered(a *pb.HeartbeatAck) (time.Time, bool) {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	sent, ok := s.sent[a.Seq]
	delete(s.sent, a.Seq)
	if a.Confirmed {
		s.confirmed = time.Now()
	} else {
		s.refusal = a.Error
	}
	return sent, ok
}

// silence is how long this stream has gone without a confirmation, and
// the server's last reason for refusing one.
func (s *session) silence() (time.Duration, string) {
	s.beatMu.Lock()
	defer s.beatMu.Unlock()
	return time.Since(s.confirmed), s.refusal
}

// errMove is why the runner left a server that still answered.
type errMove struct{ msg string }

func (e *errMove) Error() string { return e.msg }

// connect runs one session: register, resend the outbox, then serve
// assignments until the stream breaks, or the server stops confirming the
// runner's leases for the move time. It says whether the server took the
// registration.
func (r *Runner) connect(ctx context.Context, server string) (registered bool, err error) {
	client, err := rpc.NewClient(server, r.hc)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
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
	// As for heartbeats: the lease seen, then the attempts held, then the
	// outbox, so each attempt the servers may ask about is listed.
	seen := r.seenLease.Load()
	running := r.running()
	unacked, err := r.outbox.Keys()
	if err != nil {
		return false, err
	}
	reg := &pb.Register{
		Life:      r.id.Life,
		SeenLease: seen,
		RunnerId:  r.cfg.ID,
		Name:      r.cfg.Name,
		Labels:    r.cfg.Labels,
		Capacity:  uint32(r.cfg.Capacity),
		Version:   r.cfg.Version,
		Token:     r.cfg.Token,
		Secret:    r.id.Secret,
		Running:   running,
	}
	reg.Unacked = unacked
	s := &session{server: server, stream: stream, sent: map[uint64]time.Time{}, window: newLogWindow()}
	defer s.window.close()
	regWait := registerTimeout(r.lease.timings())
	regTimer := time.AfterFunc(regWait, func() {
		cancel(&errMove{fmt.Sprintf("server %s did not answer register within %s", server, regWait)})
	})
	first, err := func() (*pb.ServerMessage, error) {
		if err := s.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Register{Register: reg}}); err != nil {
			return nil, err
		}
		return stream.Receive()
	}()
	regTimer.Stop()
	if err != nil {
		return false, fmt.Errorf("register: %w", causeOr(ctx, err))
	}
	welcome := first.GetRegistered()
	if welcome == nil {
		return false, fmt.Errorf("register: server answered %T", first.Msg)
	}
	r.lease.setPeriod(welcome.LeasePeriod.AsDuration())
	r.servers.learn(welcome.Servers)
	s.confirmed = time.Now()
	r.mu.Lock()
	r.session = s
	changed := r.status != welcome.Status
	r.status = welcome.Status
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.session = nil
		r.mu.Unlock()
		stream.CloseRequest()
	}()
	r.registered(server, welcome, changed)
	for _, k := range unacked {
		if err := r.resend(s, k); err != nil {
			return true, causeOr(ctx, err)
		}
	}
	interval := welcome.HeartbeatInterval.AsDuration()
	if interval <= 0 {
		interval = r.lease.timings().Heartbeat
	}
	go r.heartbeat(ctx, s, interval, cancel)
	go r.resendOutbox(ctx, s)
	for {
		msg, err := stream.Receive()
		if err != nil {
			return true, causeOr(ctx, err)
		}
		switch m := msg.Msg.(type) {
		case *pb.ServerMessage_Assign:
			r.start(m.Assign.Job)
		case *pb.ServerMessage_Cancel:
			r.cancelJob(m.Cancel.JobId, m.Cancel.Lease, m.Cancel.Reason)
		case *pb.ServerMessage_Ack:
			if m.Ack.FinalPiece > 0 {
				s.window.answered(pieceKey{m.Ack.JobId, m.Ack.Lease, m.Ack.FinalPiece})
			}
			r.handleAck(m.Ack)
		case *pb.ServerMessage_HeartbeatAck:
			sent, ok := s.answered(m.HeartbeatAck)
			r.servers.learn(m.HeartbeatAck.Servers)
			if ok && m.HeartbeatAck.Confirmed {
				r.lease.confirm(sent)
			}
		case *pb.ServerMessage_GossipKeyring:
			if r.cfg.OnKeyring != nil {
				r.cfg.OnKeyring(m.GossipKeyring.Keys, m.GossipKeyring.Primary)
			}
		case *pb.ServerMessage_Registered:
			r.mu.Lock()
			changed := r.status != m.Registered.Status
			r.status = m.Registered.Status
			r.mu.Unlock()
			r.lease.setPeriod(m.Registered.LeasePeriod.AsDuration())
			r.servers.learn(m.Registered.Servers)
			r.registered(server, m.Registered, changed)
		}
	}
}

// causeOr returns why ctx was canceled, if it was, else err: a stream the
// runner closed on purpose says why.
func causeOr(ctx context.Context, err error) error {
	var move *errMove
	if errors.As(context.Cause(ctx), &move) {
		return move
	}
	return err
}

// registered reports a registration answer and passes on gossip addresses.
func (r *Runner) registered(server string, m *pb.Registered, changed bool) {
	switch {
	case !changed:
		r.logger.Debug("connected", "server", server, "status", m.Status)
	case m.Status == rpc.RunnerAdopted:
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

// heartbeat reports on the stream, the first time at once so the lease is
// confirmed before any job starts, and leaves the server (cancel) when it
// has confirmed nothing for the move time: a black-holed connection, or a
// server that has lost its leader, cannot keep the runner.
func (r *Runner) heartbeat(ctx context.Context, s *session, every time.Duration, leave context.CancelCauseFunc) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		// The lease seen first, then held attempts, then the outbox: an
		// assignment that arrives in between is above the lease seen, and
		// an attempt that ends in between is in the outbox by the time it
		// is read, so every one the servers may ask about is listed.
		seen := r.seenLease.Load()
		running := r.running()
		unacked, err := r.outbox.Keys()
		if err != nil {
			r.logger.Warn("reading outbox", "error", err)
		}
		if err := s.beat(r.id.Life, seen, running, unacked); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		move := r.lease.timings().Move
		if silent, why := s.silence(); silent > move {
			if why == "" {
				why = "no answer"
			}
			leave(&errMove{fmt.Sprintf("server %s confirmed no heartbeat for %s (%s)", s.server, silent.Round(100*time.Millisecond), why)})
			return
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
		pending, err := r.outbox.Keys()
		if err != nil {
			r.logger.Warn("reading outbox", "error", err)
			continue
		}
		next := map[string]int{}
		for _, k := range pending {
			key := fmt.Sprintf("%s/%d", k.JobId, k.Lease)
			// Send what was already waiting at the previous tick: a
			// result sent a moment ago has its answer on the way.
			if next[key] = seen[key] + 1; next[key] < 2 {
				continue
			}
			if err := r.resend(s, k); err != nil {
				return
			}
		}
		seen = next
	}
}

// resend sends a result from the outbox again, with its final log. Results
// are read one at a time: each may hold a whole attempt's log.
func (r *Runner) resend(s *session, k *pb.RunningJob) error {
	f, err := r.outbox.Get(k.JobId, k.Lease)
	if err != nil {
		r.logger.Warn("reading outbox", "job", k.JobId, "error", err)
		return nil
	}
	if f == nil {
		return nil // acknowledged meanwhile
	}
	return sendResult(s.send, s.window, f)
}

func (r *Runner) handleAck(a *pb.Ack) {
	switch a.Kind {
	case "started":
		r.mu.Lock()
		e := r.jobs[jobKey{a.JobId, a.Lease}]
		r.mu.Unlock()
		if e != nil {
			e.startAnswered(a)
		}
		return
	case "finished":
	default:
		switch {
		case a.NextLine > 0 && a.Error == "":
			r.mu.Lock()
			e := r.jobs[jobKey{a.JobId, a.Lease}]
			r.mu.Unlock()
			if e != nil {
				e.log.stored(a.FirstLine, a.NextLine)
			}
		case a.Stale:
			r.cancelJob(a.JobId, a.Lease, "lease is stale: "+a.Error)
		case a.Invalid:
			// Lines the servers will never take (past the log limit):
			// they are not sent again.
			r.logger.Warn("server refused log lines", "job", a.JobId, "error", a.Error)
		}
		return
	}
	switch {
	case a.Stale:
		// The attempt is no longer ours: a stored result for it has
		// nowhere to go.
	case a.Invalid:
		// The result can never be recorded as it is: replace it with one
		// that can, so the job ends and its slot is freed.
		r.logger.Error("server refused a result as malformed; sending a plain failure instead", "job", a.JobId, "error", a.Error)
		fin := &pb.JobFinished{JobId: a.JobId, Lease: a.Lease, Outcome: "failed", ExitCode: -1, Time: timestamppb.Now(),
			Reason: "the runner's result could not be recorded: " + a.Error}
		if err := r.outbox.Put(fin); err != nil {
			r.logger.Error("storing the replacement result", "job", a.JobId, "error", err)
		}
		_ = r.send(&pb.RunnerMessage{Msg: &pb.RunnerMessage_Finished{Finished: fin}})
		return
	case a.Error != "":
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
