package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// leaderWait bounds how long a write waits for an election to produce a
// leader before failing with a retryable error.
const leaderWait = 5 * time.Second

// peers caches clients for other servers, keyed by HTTP address.
type peers struct {
	hc *http.Client
	// scheme is https under TLS, where hc presents this server's
	// certificate and requires server.<domain> in the peer's.
	scheme string
	mu     sync.Mutex
	by     map[string]outpostv1connect.ClusterServiceClient
}

func newPeers(tc *tlsutil.Configurator) *peers {
	p := &peers{hc: rpc.NewHTTPClient(), scheme: "http", by: map[string]outpostv1connect.ClusterServiceClient{}}
	if tc != nil {
		p.hc, p.scheme = rpc.NewTLSHTTPClient(tc.OutgoingServer()), "https"
	}
	return p
}

// url is the base URL of a server's API address.
func (p *peers) url(addr string) string { return p.scheme + "://" + addr }

// PeerHTTPClient implements rpcserver.Backend.
func (s *Server) PeerHTTPClient() *http.Client { return s.peers.hc }

// PeerURL implements rpcserver.Backend.
func (s *Server) PeerURL(addr string) string { return s.peers.url(addr) }

func (p *peers) cluster(addr string) outpostv1connect.ClusterServiceClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.by[addr]
	if !ok {
		c = outpostv1connect.NewClusterServiceClient(p.hc, p.url(addr), connect.WithInterceptors(rpc.UnavailableOnReset()))
		p.by[addr] = c
	}
	return c
}

// leaderHTTP returns the leader's HTTP address, waiting out an election for
// up to leaderWait. It returns "" with no error when this server leads.
func (s *Server) leaderHTTP(ctx context.Context) (string, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		if s.raft.State() == raft.Leader {
			return "", nil
		}
		_, id := s.raft.LeaderWithID()
		if id != "" {
			if addr := s.httpAddrOf(string(id)); addr != "" {
				return addr, nil
			}
		}
		if time.Now().After(deadline) {
			if id != "" {
				return "", fmt.Errorf("%w: leader %s has not announced its API address", rpcserver.ErrNoLeader, id)
			}
			return "", fmt.Errorf("%w: no leader elected (is a quorum of servers up?)", rpcserver.ErrNoLeader)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LeaderAddr implements rpcserver.Backend.
func (s *Server) LeaderAddr(ctx context.Context) (string, error) { return s.leaderHTTP(ctx) }

// httpAddrOf finds a server's API address from its gossip metadata.
func (s *Server) httpAddrOf(name string) string {
	if name == s.cfg.NodeID {
		return s.httpAddr
	}
	if s.gossip == nil {
		return ""
	}
	for _, m := range s.gossip.Members() {
		if m.Name == name && m.Meta.Role == RoleServer {
			return m.Meta.HTTP
		}
	}
	return ""
}

// Apply implements rpcserver.Backend: it commits the entry (see Commit) and then
// waits until this server's replica has applied it, so the caller reads its
// own write here.
func (s *Server) Apply(ctx context.Context, t fsm.MessageType, body proto.Message) (any, error) {
	res, index, err := s.Commit(ctx, t, body)
	if err != nil || index == 0 {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	if err := s.fsm.WaitIndex(wctx, index); err != nil {
		return nil, fmt.Errorf("%w: committed at index %d, but this server has not applied it yet: %v", rpcserver.ErrNoLeader, index, err)
	}
	return res, nil
}

// Commit implements rpcserver.Backend: the leader commits the entry; any other
// server forwards it to the leader. It returns once a quorum has it, with
// the index it was committed at, without waiting for this replica: a
// follower learns of a commit only with the leader's next message, which
// would add milliseconds to every forwarded write on the hot paths.
func (s *Server) Commit(ctx context.Context, t fsm.MessageType, body proto.Message) (any, uint64, error) {
	if e, ok := body.(*pb.SubmitJobsEntry); ok && t == fsm.SubmitJobsType {
		// Submits are group-committed on every server, so a follower
		// forwards many in one call and the leader appends them as one
		// entry.
		index, err := s.submits.submit(ctx, e, proto.Size(e)+1)
		return nil, index, err
	}
	data, err := fsm.Encode(t, body)
	if err != nil {
		return nil, 0, err
	}
	return s.commitEncoded(ctx, t, body, data)
}

// commitEncoded commits an encoded entry: through Raft on the leader, by
// forwarding it elsewhere. body is needed only for report batches (see
// forward); the submit batcher passes nil.
func (s *Server) commitEncoded(ctx context.Context, t fsm.MessageType, body proto.Message, data []byte) (any, uint64, error) {
	leader, err := s.leaderHTTP(ctx)
	if err != nil {
		return nil, 0, err
	}
	if leader == "" {
		index, res, err := s.raftApply(ctx, data)
		return res, index, err
	}
	return s.forward(ctx, leader, t, body, data)
}

// forward sends an encoded entry to the leader at leader and rebuilds its
// result. body is the decoded entry, needed only for report batches.
func (s *Server) forward(ctx context.Context, leader string, t fsm.MessageType, body proto.Message, data []byte) (any, uint64, error) {
	resp, err := s.peers.cluster(leader).Apply(ctx, connect.NewRequest(&pb.ApplyRequest{Entry: data}))
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable {
			return nil, 0, fmt.Errorf("%w: forwarding to leader at %s: %s", rpcserver.ErrNoLeader, leader, ce.Message())
		}
		return nil, 0, fmt.Errorf("forwarding %s to leader at %s: %w", t, leader, err)
	}
	m := resp.Msg
	if m.ErrorKind != "" || m.ErrorMessage != "" {
		return nil, m.Index, rpcserver.RebuildError(m.ErrorKind, m.ErrorMessage)
	}
	switch t {
	case fsm.AssignJobsType:
		return &fsm.AssignResult{Assigned: m.Assigned}, m.Index, nil
	case fsm.RunnerReportsType:
		n := len(body.(*pb.RunnerReportsEntry).Reports)
		res := &fsm.ReportsResult{Errors: make([]error, n)}
		for _, re := range m.ReportErrors {
			if int(re.Index) < n {
				res.Errors[re.Index] = rpcserver.RebuildError(re.Kind, re.Message)
			}
		}
		return res, m.Index, nil
	}
	return nil, m.Index, nil
}

// raftApply commits one entry through Raft on this server, the leader.
func (s *Server) raftApply(ctx context.Context, data []byte) (uint64, any, error) {
	timeout := applyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	fut := s.raft.Apply(data, timeout)
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return 0, nil, fmt.Errorf("%w: %v; retry", rpcserver.ErrNoLeader, err)
		}
		return 0, nil, fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := fut.Response().(error); ok {
		return fut.Index(), nil, err
	}
	return fut.Index(), fut.Response(), nil
}

// ApplyEntry implements rpcserver.Backend for writes forwarded by other servers.
func (s *Server) ApplyEntry(ctx context.Context, entry []byte) (*pb.ApplyResponse, error) {
	if s.raft.State() != raft.Leader {
		return nil, fmt.Errorf("%w: this server is no longer the leader", rpcserver.ErrNoLeader)
	}
	var (
		index uint64
		res   any
		err   error
	)
	if e, ok := submitEntry(entry); ok {
		// Decoded once here rather than checked and decoded again.
		index, err = s.submits.submit(ctx, e, len(entry))
	} else if _, _, derr := fsm.Decode(entry); derr != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, derr)
	} else {
		index, res, err = s.raftApply(ctx, entry)
	}
	if err != nil && index == 0 {
		return nil, err
	}
	resp := &pb.ApplyResponse{Index: index}
	if err != nil {
		resp.ErrorKind, resp.ErrorMessage = rpcserver.ErrorKind(err), err.Error()
	}
	switch r := res.(type) {
	case *fsm.AssignResult:
		resp.Assigned = r.Assigned
	case *fsm.ReportsResult:
		for i, e := range r.Errors {
			if e != nil {
				resp.ReportErrors = append(resp.ReportErrors, &pb.ReportError{Index: uint32(i), Kind: rpcserver.ErrorKind(e), Message: e.Error()})
			}
		}
	}
	return resp, nil
}

// ReadBarrier implements rpcserver.Backend. The leader confirms it still leads; a
// follower asks the leader how far state has gone and waits to catch up, so
// a read on any server sees every write acknowledged before it.
func (s *Server) ReadBarrier(ctx context.Context, stale bool) error {
	if stale {
		return nil
	}
	leader, err := s.leaderHTTP(ctx)
	if err != nil {
		return err
	}
	if leader == "" {
		if !s.leaderReady.Load() {
			return fmt.Errorf("%w: this server was just elected and is still catching up; retry", rpcserver.ErrNoLeader)
		}
		if err := s.raft.VerifyLeader().Error(); err != nil {
			return fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, err)
		}
		return nil
	}
	resp, err := s.peers.cluster(leader).ReadIndex(ctx, connect.NewRequest(&pb.ReadIndexRequest{}))
	if err != nil {
		return fmt.Errorf("%w: asking leader at %s for its index: %v (use -stale to read this server's copy)", rpcserver.ErrNoLeader, leader, err)
	}
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return s.fsm.WaitIndex(wctx, resp.Msg.Index)
}

// LeaderReadIndex implements rpcserver.Backend: the index a consistent read must
// wait for, from a leader that has just confirmed it leads.
func (s *Server) LeaderReadIndex(ctx context.Context) (uint64, error) {
	if s.raft.State() != raft.Leader || !s.leaderReady.Load() {
		return 0, fmt.Errorf("%w: this server is not a ready leader", rpcserver.ErrNoLeader)
	}
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, err)
	}
	return s.fsm.AppliedIndex(), nil
}

// RemoteRunners implements rpcserver.Backend: a follower's report of its runner
// streams, answered only once this server has verified it leads, so the
// follower may confirm those runners' leases.
func (s *Server) RemoteRunners(ctx context.Context, server string, ids []string, silentMS []uint32) error {
	if s.raft.State() != raft.Leader {
		return fmt.Errorf("%w: this server is not the leader", rpcserver.ErrNoLeader)
	}
	s.liveness.Remote(server, ids, silentMS)
	if err := s.liveness.awaitReaps(ctx, ids); err != nil {
		return fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, err)
	}
	return s.verifyLeader(ctx)
}

// recentBarrierAge is how old the last barrier may be for RecentBarrier.
const recentBarrierAge = time.Second

// recentBarrier shares read barriers among the calls of a moment.
type recentBarrier struct {
	mu       sync.Mutex
	at       time.Time     // when the last successful barrier started
	inflight chan struct{} // closed when the barrier in flight ends
	err      error         // its outcome
}

// RecentBarrier implements rpcserver.Backend.
func (s *Server) RecentBarrier(ctx context.Context) error {
	b := &s.barrier
	for {
		b.mu.Lock()
		if !b.at.IsZero() && time.Since(b.at) < recentBarrierAge {
			b.mu.Unlock()
			return nil
		}
		if ch := b.inflight; ch != nil {
			b.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("%w: %v", rpcserver.ErrNoLeader, ctx.Err())
			}
			b.mu.Lock()
			err := b.err
			b.mu.Unlock()
			if err != nil {
				return err
			}
			continue
		}
		ch := make(chan struct{})
		b.inflight = ch
		b.mu.Unlock()
		start := time.Now()
		err := s.ReadBarrier(ctx, false)
		b.mu.Lock()
		b.inflight, b.err = nil, err
		if err == nil {
			b.at = start
		}
		b.mu.Unlock()
		close(ch)
		return err
	}
}
