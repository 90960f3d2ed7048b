package agent

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

var _ rpcserver.Backend = (*Server)(nil)

// RegisterRunner implements rpcserver.Backend. It checks the runner's secret
// against the one bound at first contact, decides adoption for newcomers,
// and writes the record only when something in it changed, so reconnects
// cost no log entries.
func (s *Server) RegisterRunner(ctx context.Context, reg *pb.Register, addr string) (*pb.Runner, error) {
	if err := s.ReadBarrier(ctx, false); err != nil {
		return nil, err
	}
	hash := rpcserver.HashSecret(reg.Secret)
	trusted := s.cfg.Dev || (reg.Token != "" && subtle.ConstantTimeCompare([]byte(reg.Token), []byte(s.localRunnerToken)) == 1)
	now := timestamppb.Now()

	cur, err := s.State().RunnerByID(nil, reg.RunnerId)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	var r *pb.Runner
	var tomb *pb.RunnerTombstone
	if cur != nil && cur.Id == reg.RunnerId {
		// The id is taken: only its own secret speaks for it, whatever
		// token comes with a different one (issue 15's takeover).
		if len(cur.SecretHash) > 0 && !bytes.Equal(cur.SecretHash, hash) && !trusted {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
				"runner %s is registered with a different secret; if its data dir was lost, an operator removes the old record with `outpost runner forget %s` and then adopts the restarted runner with `outpost runner adopt %s`", cur.Id, cur.Id, cur.Id))
		}
		if cur.Status == rpc.RunnerRejected {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("runner %s was rejected by an operator", cur.Id))
		}
		r = proto.Clone(cur).(*pb.Runner)
	} else {
		tomb = s.State().RunnerTombstone(reg.RunnerId)
		if tomb != nil && !trusted && slices.ContainsFunc(tomb.RejectedSecretHashes, func(h []byte) bool { return bytes.Equal(h, hash) }) {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("runner %s was rejected by an operator; its secret is refused for good", reg.RunnerId))
		}
		r = &pb.Runner{Id: reg.RunnerId, FirstSeen: now, Status: rpc.RunnerPending,
			StatusReason: fmt.Sprintf("waiting for adoption: run `outpost runner adopt %s`, or start the runner with a token from `outpost runner token create`", reg.RunnerId)}
		if tomb != nil {
			r.StatusReason = fmt.Sprintf("id %s was forgotten by an operator, so no token adopts it again: run `outpost runner adopt %s` if this is the runner you expect", reg.RunnerId, reg.RunnerId)
		}
	}
	r.Name, r.Labels, r.Capacity, r.Version, r.Address = reg.Name, reg.Labels, reg.Capacity, reg.Version, addr
	r.SecretHash = hash
	r.State = rpc.RunnerReady
	if r.Status == rpc.RunnerPending {
		if tomb == nil {
			// A forgotten id back as pending: its token adopts nothing.
			tomb = s.State().RunnerTombstone(reg.RunnerId)
		}
		switch {
		case trusted:
			r.Status, r.StatusReason = rpc.RunnerAdopted, "adopted automatically: runs inside a server agent"
			if s.cfg.Dev {
				r.StatusReason = "adopted automatically by the dev agent"
			}
		case reg.Token != "" && tomb == nil:
			return s.registerWithToken(ctx, r, reg.Token, now)
		}
	}
	if cur != nil && cur.Id == reg.RunnerId && runnerSame(cur, r) {
		return cur, nil
	}
	r.LastSeen = now
	if _, err := s.Apply(ctx, fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: r}); err != nil {
		return nil, fmt.Errorf("recording runner %s: %w", r.Id, err)
	}
	return s.State().RunnerByID(nil, r.Id)
}

// registerWithToken adopts a pending runner with an adoption token. The
// state machine decides (uses left, expiry, labels) and counts the use;
// checking here first only gives a refused runner its answer sooner.
func (s *Server) registerWithToken(ctx context.Context, r *pb.Runner, token string, now *timestamppb.Timestamp) (*pb.Runner, error) {
	refuse := func(err error) error {
		msg := strings.TrimSuffix(strings.TrimSuffix(err.Error(), ": "+state.ErrConflict.Error()), ": "+state.ErrNotFound.Error())
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
			"%s; create a token with `outpost runner token create`, or start without -token and adopt the runner with `outpost runner adopt %s`", msg, r.Id))
	}
	tok, err := s.State().RunnerTokenByHash(rpcserver.HashSecret(token))
	if err != nil {
		return nil, refuse(errors.New("the adoption token is unknown or revoked"))
	}
	if err := state.TokenAdmits(tok, r.Labels, now); err != nil {
		return nil, refuse(err)
	}
	r.LastSeen = now
	if _, err := s.Apply(ctx, fsm.RegisterRunnerType, &pb.RegisterRunnerEntry{Runner: r, TokenId: tok.Id, Time: now}); err != nil {
		if errors.Is(err, state.ErrConflict) || errors.Is(err, state.ErrNotFound) {
			return nil, refuse(err)
		}
		return nil, fmt.Errorf("recording runner %s: %w", r.Id, err)
	}
	return s.State().RunnerByID(nil, r.Id)
}

// runnerSame reports whether a registration changes nothing worth a write.
func runnerSame(a, b *pb.Runner) bool {
	return a.Name == b.Name && a.Capacity == b.Capacity && a.Version == b.Version && a.Address == b.Address &&
		a.Status == b.Status && a.State == b.State && maps.Equal(a.Labels, b.Labels) &&
		bytes.Equal(a.SecretHash, b.SecretHash) && slices.Equal(a.Projects, b.Projects)
}

// RunnerConnected implements rpcserver.Backend.
func (s *Server) RunnerConnected(id string) func() { return s.liveness.Connected(id) }

// RunnerSeen implements rpcserver.Backend.
func (s *Server) RunnerSeen(id string) { s.liveness.Seen(id) }

// RunnerLastSeen implements rpcserver.Backend.
func (s *Server) RunnerLastSeen(id string) (time.Time, bool) { return s.liveness.LastSeen(id) }

// RunnerFresh implements rpcserver.Backend.
func (s *Server) RunnerFresh(id string) bool { return s.liveness.Fresh(id) }

// ConfirmRunner implements rpcserver.Backend.
func (s *Server) ConfirmRunner(id string, done func(error)) { s.leases.confirm(id, done) }

// ServeRunners implements rpcserver.Backend.
func (s *Server) ServeRunners() error {
	return s.leases.serving(rpc.Timings(s.cfg.RunnerTimeout).Move)
}

// LeasePeriod implements rpcserver.Backend.
func (s *Server) LeasePeriod() time.Duration { return s.cfg.RunnerTimeout }

// ServerAddrs implements rpcserver.Backend.
func (s *Server) ServerAddrs() []string {
	addrs, _ := s.serverAddrs.Load().([]string)
	return addrs
}

// refreshServerAddrs maps the Raft configuration to API addresses through
// gossip, sorted, for runners to move to when their server fails.
func (s *Server) refreshServerAddrs() {
	fut := s.raft.GetConfiguration()
	if fut.Error() != nil {
		return
	}
	var addrs []string
	for _, srv := range fut.Configuration().Servers {
		if a := s.httpAddrOf(string(srv.ID)); a != "" {
			addrs = append(addrs, s.PeerURL(a))
		}
	}
	if len(addrs) == 0 {
		return
	}
	slices.Sort(addrs)
	if !slices.Equal(addrs, s.ServerAddrs()) {
		s.serverAddrs.Store(addrs)
	}
}

// GossipAddrs implements rpcserver.Backend.
func (s *Server) GossipAddrs() []string {
	if s.gossip == nil {
		return nil
	}
	var out []string
	for _, m := range s.gossip.Members() {
		if m.Meta.Role == RoleServer && m.Status == "alive" {
			out = append(out, m.Addr)
		}
	}
	return out
}

// LocalRunnerToken is the in-memory token that adopts the runner running
// inside this server's own agent (-runner), which needs no operator.
func (s *Server) LocalRunnerToken() string { return s.localRunnerToken }
