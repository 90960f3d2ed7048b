package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// RunnerService implements the runner stream: the server end of the one
// connection a runner opens.
type RunnerService struct {
	b       Backend
	logger  hclog.Logger
	reports *reportBatcher

	leaderMu   sync.Mutex
	leaderAddr string
	leader     outpostv1connect.RunnerServiceClient
}

var _ outpostv1connect.RunnerServiceHandler = (*RunnerService)(nil)

func validateRegister(r *pb.Register) error {
	if r == nil {
		return invalid("the first message on a runner stream must be register")
	}
	// The rules `runner agent` checks at start (internal/validate): a
	// runner of this version never gets here with a bad value, so this
	// catches other clients and other versions.
	if err := validate.RunnerID(r.RunnerId); err != nil {
		return invalid("register.runner_id: %v", err)
	}
	if r.Name != "" {
		if err := validate.RunnerName(r.Name); err != nil {
			return invalid("register.name: %v", err)
		}
	}
	if err := validate.Capacity(int64(r.Capacity)); err != nil {
		return invalid("register.capacity: %v", err)
	}
	if err := validate.Labels(r.Labels); err != nil {
		return invalid("register.labels: %v", err)
	}
	if len(r.Secret) < 16 || len(r.Secret) > 256 {
		return invalid("register.secret: the runner's own secret (16 to 256 characters) is required")
	}
	return nil
}

// validateReport checks what every job report needs. A report that fails
// is answered with an invalid ack, not by closing the stream: the runner
// then knows to replace it, where a broken stream would make it send the
// same report again forever.
func validateReport(m *pb.RunnerMessage) error {
	jobID, lease := reportKey(m)
	switch {
	case jobID == "" || lease == 0:
		return invalid("%s report: job_id and lease are required", reportKind(m))
	case len(jobID) > 64:
		return invalid("%s report: job_id is %d bytes; job ids are at most 64", reportKind(m), len(jobID))
	}
	return nil
}

// Connect serves one runner's stream until it ends.
func (s *RunnerService) Connect(ctx context.Context, stream *connect.BidiStream[pb.RunnerMessage, pb.ServerMessage]) error {
	first, err := stream.Receive()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if err := validateRegister(reg); err != nil {
		return err
	}
	runner, err := s.b.RegisterRunner(ctx, reg, stream.Peer().Addr)
	if err != nil {
		return toConnect(err)
	}
	if runner.Status == rpc.RunnerRejected {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("runner %s was rejected by an operator", runner.Id))
	}
	if err := s.b.ServeRunners(); err != nil {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	c := &runnerConn{
		svc:    s,
		id:     runner.Id,
		stream: stream,
		logger: s.logger.With("runner", runner.Id),
		budget: newByteBudget(maxOutstandingBytes),
	}
	defer c.end()
	if err := c.sendRegistered(runner); err != nil {
		return err
	}
	closed := s.b.RunnerConnected(runner.Id)
	defer closed()
	c.logger.Debug("runner stream open", "addr", stream.Peer().Addr, "status", runner.Status)
	if err := c.reconcile(ctx, reg); err != nil {
		c.logger.Warn("reconciling runner's jobs failed", "error", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { cancel(c.receive(ctx)) }()
	err = c.deliver(ctx, runner.Status, reg)
	cancel(err)
	err = context.Cause(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	c.logger.Debug("runner stream closed", "reason", err)
	return err
}

type runnerConn struct {
	svc    *RunnerService
	id     string
	stream *connect.BidiStream[pb.RunnerMessage, pb.ServerMessage]
	logger hclog.Logger
	// budget bounds the bytes of this stream's reports waiting to commit.
	budget *byteBudget

	sendMu sync.Mutex
	// servers is the server list the runner was last sent (guarded by
	// sendMu): heartbeat answers carry it again only when it changes.
	servers []string
	// over is set (under sendMu) when the handler returns: answers that
	// complete later, such as lease confirmations, must not write to a
	// stream whose handler has finished.
	over bool
}

// end marks the stream over for late senders.
func (c *runnerConn) end() {
	c.sendMu.Lock()
	c.over = true
	c.sendMu.Unlock()
}

func (c *runnerConn) sendRegistered(r *pb.Runner) error {
	t := rpc.Timings(c.svc.b.LeasePeriod())
	c.sendMu.Lock()
	c.servers = c.svc.b.ServerAddrs()
	servers := c.servers
	c.sendMu.Unlock()
	return c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Registered{Registered: &pb.Registered{
		RunnerId:          r.Id,
		Status:            r.Status,
		StatusReason:      r.StatusReason,
		HeartbeatInterval: durationpb.New(t.Heartbeat),
		GossipAddrs:       c.svc.b.GossipAddrs(),
		Servers:           servers,
		LeasePeriod:       durationpb.New(t.Period),
	}}})
}

// confirmHeartbeat answers heartbeat seq once the leader has confirmed the
// runner's leases, or could not.
func (c *runnerConn) confirmHeartbeat(seq uint64) {
	c.svc.b.ConfirmRunner(c.id, func(err error) {
		ack := &pb.HeartbeatAck{Seq: seq, Confirmed: err == nil}
		if err != nil {
			ack.Error = err.Error()
		}
		c.sendMu.Lock()
		if servers := c.svc.b.ServerAddrs(); !slices.Equal(servers, c.servers) {
			c.servers, ack.Servers = servers, servers
		}
		c.sendMu.Unlock()
		// A failed send means the stream is gone; its reader ends it.
		_ = c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_HeartbeatAck{HeartbeatAck: ack}})
	})
}

// errStreamOver is what a send to a finished stream returns.
var errStreamOver = errors.New("runner stream is over")

// send serialises writes: assignments, acks and lease confirmations come
// from several goroutines.
func (c *runnerConn) send(m *pb.ServerMessage) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if c.over {
		return errStreamOver
	}
	return c.stream.Send(m)
}

// reconcile ends the attempts that the server believes run on this runner
// but that the runner no longer knows about (it restarted and lost them), so
// they are requeued at once instead of waiting for a timeout.
func (c *runnerConn) reconcile(ctx context.Context, reg *pb.Register) error {
	lost := vanished(c.svc.b.State().ActiveJobs(nil, c.id), reg.Life, reg.SeenLease, reg.Running, reg.Unacked)
	if len(lost) == 0 {
		return nil
	}
	_, err := c.svc.b.Apply(ctx, fsm.MarkLostType, &pb.MarkLostEntry{
		Jobs:   lost,
		Reason: "runner " + c.id + " restarted and no longer runs it",
		Time:   timestamppb.Now(),
	})
	return err
}

// deliver sends the runner every assignment and cancel request made for it,
// each once per lease, waking on state changes. It ends the stream when the
// runner is rejected or forgotten, or its heartbeats lapse.
func (c *runnerConn) deliver(ctx context.Context, status string, reg *pb.Register) error {
	assigned := map[string]uint64{}
	canceled := map[string]uint64{}
	// The gossip keyring last sent: at register, then on every change.
	var keyring *pb.GossipKeyring
	// What the runner runs, or has a result for, needs no Assign again.
	for _, r := range append(append([]*pb.RunningJob(nil), reg.Running...), reg.Unacked...) {
		assigned[r.JobId] = r.Lease
	}
	for ctx.Err() == nil {
		ws := memdb.NewWatchSet()
		st := c.svc.b.State()
		r, err := st.RunnerByID(ws, c.id)
		switch {
		case errors.Is(err, state.ErrNotFound):
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("runner %s was forgotten by an operator; restart it to register anew", c.id))
		case err == nil && r.Status == rpc.RunnerRejected:
			c.logger.Info("closing stream of rejected runner")
			return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("runner %s was rejected by an operator", c.id))
		case !c.svc.b.RunnerFresh(c.id):
			return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("no heartbeat from runner %s in time; closing its stream", c.id))
		}
		if err := c.svc.b.ServeRunners(); err != nil {
			c.logger.Info("closing runner stream so the runner moves to another server", "reason", err)
			return connect.NewError(connect.CodeUnavailable, err)
		}
		if err == nil && r.Status != status {
			if err := c.sendRegistered(r); err != nil {
				return err
			}
			status = r.Status
		}
		if k := st.GossipKeyring(ws); k != nil && (keyring == nil || k.ModifyIndex != keyring.ModifyIndex) {
			// Only to adopted runners: the keys admit to the pool.
			if err == nil && r.Status == rpc.RunnerAdopted {
				if err := c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_GossipKeyring{GossipKeyring: k}}); err != nil {
					return err
				}
				keyring = k
			}
		}
		active := map[string]bool{}
		if err == nil && r.Status == rpc.RunnerAdopted {
			for _, j := range st.ActiveJobs(ws, c.id) {
				active[j.Id] = true
				if assigned[j.Id] != j.Lease {
					if err := c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Assign{Assign: &pb.Assign{Job: j}}}); err != nil {
						return err
					}
					assigned[j.Id] = j.Lease
				}
				if j.CancelRequested && canceled[j.Id] != j.Lease {
					if err := c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Cancel{Cancel: &pb.CancelAssigned{
						JobId: j.Id, Lease: j.Lease, Reason: j.StatusReason,
					}}}); err != nil {
						return err
					}
					canceled[j.Id] = j.Lease
				}
			}
		}
		for id := range assigned {
			if !active[id] {
				delete(assigned, id)
				delete(canceled, id)
			}
		}
		watchOrTimeout(ctx, ws)
	}
	return ctx.Err()
}

// receive reads the runner's messages until the stream fails. Job reports
// go to the server's report batcher; sendAcks answers them as they commit.
func (c *runnerConn) receive(ctx context.Context) error {
	results := make(chan reportResult, maxOutstandingReports)
	slots := make(chan struct{}, maxOutstandingReports)
	ackErr := make(chan error, 1)
	go func() { ackErr <- c.sendAcks(ctx, results, slots) }()
	for {
		msg, err := c.stream.Receive()
		if err != nil {
			return err
		}
		c.svc.b.RunnerSeen(c.id)
		switch m := msg.Msg.(type) {
		case *pb.RunnerMessage_Heartbeat:
			if err := c.fenceRunning(m.Heartbeat.Running); err != nil {
				return err
			}
			c.confirmHeartbeat(m.Heartbeat.Seq)
			c.handBackVanished(ctx, m.Heartbeat)
			continue
		case *pb.RunnerMessage_Started, *pb.RunnerMessage_Logs, *pb.RunnerMessage_Finished:
		default:
			return invalid("unexpected runner message %T", msg.Msg)
		}
		select {
		case slots <- struct{}{}:
		case err := <-ackErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		// results has room for every outstanding report, so done never
		// blocks the batcher, even once this stream is gone.
		done := func(err error) { results <- reportResult{msg: msg, err: err} }
		if err := validateReport(msg); err != nil {
			done(err)
			continue
		}
		if c.recorded(msg) {
			done(nil)
			continue
		}
		size := reportSize(msg)
		parts := splitReport(msg, size)
		if len(parts) == 1 && size > maxReportBytes {
			done(invalid("%s report: %d bytes is over the %d a server records at once", reportKind(msg), size, maxReportBytes))
			continue
		}
		if err := c.queue(ctx, parts, size, results); err != nil {
			return err
		}
	}
}

// recorded reports whether m is a piece of a final log that this server's
// replica shows recorded already, or whose result is: a runner sends a result's final log
// again with the result until the result is acknowledged, and a piece
// recorded once needs no second trip through Raft. The replica may lag;
// then the piece goes, and the state machine ignores it.
func (c *runnerConn) recorded(m *pb.RunnerMessage) bool {
	l := m.GetLogs()
	if l == nil || l.FinalPiece == 0 {
		return false
	}
	j, err := c.svc.b.State().JobByID(nil, l.JobId)
	if err != nil || j.Id != l.JobId {
		return false
	}
	if rpc.JobTerminal(j.Status) && j.Status != rpc.JobLost && j.Lease == l.Lease {
		return true // its result is in: the attempt's log is done
	}
	a := j.AttemptLog
	return a != nil && a.Lease == l.Lease && a.FinalPieces >= l.FinalPiece
}

// queue hands the parts of one report to the batcher, in order, once the
// stream's byte budget has room for each; the last part's outcome is the
// report's. Waiting for room stops this stream's reading, heartbeats
// included, which is why runners bound what they send (per job, a rate).
func (c *runnerConn) queue(ctx context.Context, parts []*pb.RunnerMessage, size int, results chan<- reportResult) error {
	for i, part := range parts {
		if len(parts) > 1 {
			size = reportSize(part)
		}
		took, err := c.budget.take(ctx, size)
		if err != nil {
			return err
		}
		done := func(err error) {
			c.budget.give(took)
			if err != nil {
				c.logger.Debug("could not record part of a runner report", "kind", reportKind(part), "error", err)
			}
		}
		if i == len(parts)-1 {
			done = func(err error) {
				c.budget.give(took)
				results <- reportResult{msg: part, err: err}
			}
		}
		if err := c.svc.reports.add(ctx, reportItem{msg: part, size: size, done: done}); err != nil {
			c.budget.give(took)
			return err
		}
	}
	return nil
}

type reportResult struct {
	msg *pb.RunnerMessage
	err error
}

// sendAcks answers each Started and Finished report, each piece of a final
// log, and each refused Logs, once it is committed or refused, freeing its
// slot.
func (c *runnerConn) sendAcks(ctx context.Context, results <-chan reportResult, slots <-chan struct{}) error {
	for {
		var r reportResult
		select {
		case r = <-results:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-slots
		kind := reportKind(r.msg)
		piece := r.msg.GetLogs().GetFinalPiece()
		logs := r.msg.GetLogs()
		if r.err == nil && kind == "logs" && piece == 0 && (logs.GetTail() || len(logs.GetLines()) == 0) {
			continue // only head lines are kept for an acknowledgement
		}
		jobID, lease := reportKey(r.msg)
		ack := &pb.Ack{JobId: jobID, Lease: lease, Kind: kind, Nonce: r.msg.GetStarted().GetNonce(), FinalPiece: piece}
		if r.err == nil && kind == "logs" && piece == 0 && logs.GetFirstLine() > 0 {
			ack.FirstLine, ack.NextLine = logs.GetFirstLine(), logs.GetFirstLine()+uint64(len(logs.GetLines()))
		}
		if r.err != nil {
			ack.Error = r.err.Error()
			ack.Stale = errors.Is(r.err, state.ErrStaleLease) || errors.Is(r.err, state.ErrNotFound)
			ack.Invalid = connect.CodeOf(r.err) == connect.CodeInvalidArgument || errors.Is(r.err, state.ErrInvalid)
			if !ack.Stale {
				c.logger.Warn("could not record runner report", "kind", kind, "job", jobID, "error", r.err)
			}
		}
		if err := c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: ack}}); err != nil {
			return err
		}
	}
}

// handBackVanished hands back attempts the servers believe started on this
// runner that it no longer holds and has no result for (its result was
// lost, say, to a full disk): else they would stay running for good. The
// hand-back names each lease, and the state machine ignores it for an
// attempt that has moved on, so a replica that lags does no harm.
func (c *runnerConn) handBackVanished(ctx context.Context, hb *pb.Heartbeat) {
	gone := vanished(c.svc.b.State().ActiveJobs(nil, c.id), hb.Life, hb.SeenLease, hb.Running, hb.Unacked)
	if len(gone) == 0 {
		return
	}
	c.logger.Warn("runner no longer holds attempts it started and has no result for them; handing them back", "jobs", len(gone))
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.svc.b.Apply(ctx, fsm.MarkLostType, &pb.MarkLostEntry{
			Jobs: gone, Reason: "runner " + c.id + " no longer holds it and has no result for it", Time: timestamppb.Now(),
		}); err != nil {
			c.logger.Warn("handing back vanished attempts", "error", err)
		}
	}()
}

// vanished lists the started attempts of active that a runner no longer
// has, going by what it said in one registration or heartbeat: its life,
// the highest lease it had seen, the attempts it holds and the results in
// its outbox. That word may arrive late (a slow server, a stream that sat
// in a queue), so only what it could have listed counts: an attempt of an
// earlier life (the runner restarted since: it is gone), or one of this
// life at or below the lease it had seen that it does not list. An
// attempt started after the word was made, by this life or a later one,
// is never taken.
func vanished(active []*pb.Job, life, seen uint64, running, unacked []*pb.RunningJob) []*pb.LostJob {
	held := map[string]uint64{}
	for _, r := range append(append([]*pb.RunningJob(nil), running...), unacked...) {
		held[r.JobId] = max(held[r.JobId], r.Lease)
	}
	var out []*pb.LostJob
	for _, j := range active {
		if j.Status == rpc.JobAssigned {
			continue // not started: sent again, or taken back at its deadline
		}
		earlier := j.RunnerLife < life
		unlisted := j.RunnerLife == life && j.Lease <= seen && held[j.Id] < j.Lease
		if earlier || unlisted {
			out = append(out, &pb.LostJob{JobId: j.Id, Lease: j.Lease})
		}
	}
	return out
}

func reportKind(m *pb.RunnerMessage) string {
	switch m.Msg.(type) {
	case *pb.RunnerMessage_Started:
		return "started"
	case *pb.RunnerMessage_Logs:
		return "logs"
	case *pb.RunnerMessage_Finished:
		return "finished"
	}
	return "unknown"
}

func reportKey(m *pb.RunnerMessage) (string, uint64) {
	switch r := m.Msg.(type) {
	case *pb.RunnerMessage_Started:
		return r.Started.GetJobId(), r.Started.GetLease()
	case *pb.RunnerMessage_Logs:
		return r.Logs.GetJobId(), r.Logs.GetLease()
	case *pb.RunnerMessage_Finished:
		return r.Finished.GetJobId(), r.Finished.GetLease()
	}
	return "", 0
}

// fenceRunning tells the runner to stop attempts it runs that are no longer
// its own: requeued after it was thought lost, or finished. It reads this
// server's replica, which may lag the leader: only a job this replica has
// seen move past the runner's lease is fenced, never one it does not know
// yet or knows only under an older lease.
func (c *runnerConn) fenceRunning(running []*pb.RunningJob) error {
	st := c.svc.b.State()
	for _, r := range running {
		j, err := st.JobByID(nil, r.JobId)
		if err != nil || j.Lease < r.Lease || (j.Lease == r.Lease && rpc.JobActive(j.Status)) {
			continue
		}
		reason := fmt.Sprintf("this attempt is no longer current: job is %s (attempt %d, lease %d)", j.Status, j.Attempt, j.Lease)
		if err := c.send(&pb.ServerMessage{Msg: &pb.ServerMessage_Cancel{Cancel: &pb.CancelAssigned{
			JobId: r.JobId, Lease: r.Lease, Reason: reason,
		}}}); err != nil {
			return err
		}
	}
	return nil
}
