package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// HashSecret is how runner secrets and adoption tokens are stored: only
// their SHA-256, so a copy of the state cannot impersonate a runner.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// withLive fills the read-only fields a runner record does not store.
func (s *RunnerService) withLive(st *state.Store, r *pb.Runner) *pb.Runner {
	r = proto.Clone(r).(*pb.Runner)
	r.SecretHash = nil
	r.Running = uint32(len(st.ActiveJobs(nil, r.Id)))
	if t, ok := s.b.RunnerLastSeen(r.Id); ok {
		r.LastSeen = timestamppb.New(t)
	}
	return r
}

// onLeader returns a client for the leader when this server is not it.
// Runner reads go there: only the leader hears from every runner, so only
// it knows when each was last seen.
func (s *RunnerService) onLeader(ctx context.Context) (outpostv1connect.RunnerServiceClient, error) {
	addr, err := s.b.LeaderAddr(ctx)
	if err != nil || addr == "" {
		return nil, err
	}
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderAddr != addr {
		s.leaderAddr, s.leader = addr, outpostv1connect.NewRunnerServiceClient(s.b.PeerHTTPClient(), s.b.PeerURL(addr))
	}
	return s.leader, nil
}

// ListRunners lists every runner record.
func (s *RunnerService) ListRunners(ctx context.Context, req *connect.Request[pb.ListRunnersRequest]) (*connect.Response[pb.ListRunnersResponse], error) {
	if !req.Msg.Stale {
		if l, err := s.onLeader(ctx); err != nil {
			return nil, toConnect(err)
		} else if l != nil {
			return l.ListRunners(ctx, forwarded(req))
		}
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	st := s.b.State()
	page, next, err := keyPage(st.Runners(nil), func(r *pb.Runner) string { return r.Id }, tokenRunners, "runner", req.Msg.PageToken, req.Msg.PageSize)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListRunnersResponse{NextPageToken: next}
	for _, r := range page {
		resp.Runners = append(resp.Runners, s.withLive(st, r))
	}
	return connect.NewResponse(resp), nil
}

// findRunner resolves an id, id prefix or unique name.
func findRunner(st *state.Store, id string) (*pb.Runner, error) {
	r, err := st.RunnerByID(nil, id)
	if err == nil {
		return r, nil
	}
	var byName *pb.Runner
	for _, x := range st.Runners(nil) {
		if x.Name == id {
			if byName != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errAmbiguousName(id))
			}
			byName = x
		}
	}
	if byName != nil {
		return byName, nil
	}
	return nil, err
}

type errAmbiguousName string

func (e errAmbiguousName) Error() string {
	return "several runners are named " + string(e) + "; use the runner id"
}

// GetRunner returns one runner and the jobs it holds.
func (s *RunnerService) GetRunner(ctx context.Context, req *connect.Request[pb.GetRunnerRequest]) (*connect.Response[pb.GetRunnerResponse], error) {
	if req.Msg.Id == "" {
		return nil, invalid("id: a runner id or name is required")
	}
	if !req.Msg.Stale {
		if l, err := s.onLeader(ctx); err != nil {
			return nil, toConnect(err)
		} else if l != nil {
			return l.GetRunner(ctx, forwarded(req))
		}
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	st := s.b.State()
	r, err := findRunner(st, req.Msg.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	// A runner serves many projects: show only the jobs of projects the
	// caller may read (a job carries its environment).
	jobs := slices.DeleteFunc(st.ActiveJobs(nil, r.Id), func(j *pb.Job) bool { return !canRead(ctx, j.Project) })
	return connect.NewResponse(&pb.GetRunnerResponse{Runner: s.withLive(st, r), Jobs: jobs}), nil
}

// RunnerAction adopts, rejects, forgets, drains or undrains a runner.
func (s *RunnerService) RunnerAction(ctx context.Context, req *connect.Request[pb.RunnerActionRequest]) (*connect.Response[pb.RunnerActionResponse], error) {
	m := req.Msg
	switch m.Action {
	case state.RunnerAdopt, state.RunnerReject, state.RunnerForget, state.RunnerDrain, state.RunnerUndrain:
	default:
		return nil, invalid("action: %q is not one of adopt, reject, forget, drain, undrain", m.Action)
	}
	if m.Id == "" {
		return nil, invalid("id: a runner id or name is required")
	}
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return nil, toConnect(err)
	}
	r, err := findRunner(s.b.State(), m.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	if m.Action == state.RunnerForget {
		// Forget leaves a tombstone: the id comes back only by an
		// operator's adopt, never by a token alone.
		if _, err := s.b.Apply(ctx, fsm.ForgetRunnerType, &pb.ForgetRunnerEntry{RunnerId: r.Id, Time: timestamppb.Now()}); err != nil {
			return nil, toConnect(err)
		}
		return connect.NewResponse(&pb.RunnerActionResponse{Runner: s.withLive(s.b.State(), r)}), nil
	}
	entry := &pb.RunnerUpdateEntry{RunnerId: r.Id, Action: m.Action, Time: timestamppb.Now()}
	if _, err := s.b.Apply(ctx, fsm.UpdateRunnerType, entry); err != nil {
		return nil, toConnect(err)
	}
	if m.Action == state.RunnerReject {
		// Its stream is closed and its jobs stopped: hand them back now
		// rather than when it would time out.
		if active := s.b.State().ActiveJobs(nil, r.Id); len(active) > 0 {
			lost := &pb.MarkLostEntry{Reason: "runner " + r.Id + " was rejected", Time: timestamppb.Now()}
			for _, j := range active {
				lost.Jobs = append(lost.Jobs, &pb.LostJob{JobId: j.Id, Lease: j.Lease})
			}
			if _, err := s.b.Apply(ctx, fsm.MarkLostType, lost); err != nil {
				return nil, toConnect(err)
			}
		}
	}
	st := s.b.State()
	r, err = st.RunnerByID(nil, r.Id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RunnerActionResponse{Runner: s.withLive(st, r)}), nil
}

// CreateRunnerToken makes an adoption token; only its hash is stored.
func (s *RunnerService) CreateRunnerToken(ctx context.Context, req *connect.Request[pb.CreateRunnerTokenRequest]) (*connect.Response[pb.CreateRunnerTokenResponse], error) {
	ttl := req.Msg.Ttl.AsDuration()
	if req.Msg.Ttl != nil && ttl < 0 {
		return nil, invalid("ttl: must not be negative")
	}
	if len(req.Msg.Description) > 256 {
		return nil, invalid("description: at most 256 characters")
	}
	if err := validate.Labels(req.Msg.Labels); err != nil {
		return nil, invalid("labels: %v", err)
	}
	if len(req.Msg.Projects) > 64 {
		return nil, invalid("projects: at most 64")
	}
	for _, p := range req.Msg.Projects {
		if err := validate.ProjectName(p); err != nil {
			return nil, invalid("projects: %v", err)
		}
	}
	secret := rpc.NewSecret("opr_")
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	now := time.Now()
	t := &pb.RunnerToken{
		Id:          "t-" + hex.EncodeToString(idb[:]),
		Hash:        HashSecret(secret),
		Description: req.Msg.Description,
		CreatedAt:   timestamppb.New(now),
		MaxUses:     req.Msg.MaxUses,
		Labels:      req.Msg.Labels,
		Projects:    slices.Sorted(slices.Values(req.Msg.Projects)),
	}
	if ttl > 0 {
		t.ExpiresAt = timestamppb.New(now.Add(ttl))
	}
	if _, err := s.b.Apply(ctx, fsm.RunnerTokenType, &pb.UpsertRunnerTokenEntry{Token: t}); err != nil {
		return nil, toConnect(err)
	}
	info := proto.Clone(t).(*pb.RunnerToken)
	info.Hash = nil
	return connect.NewResponse(&pb.CreateRunnerTokenResponse{Info: info, Token: secret}), nil
}

// ListRunnerTokens lists the adoption tokens: ids, uses, bindings and
// expiry, never a secret or its hash.
func (s *RunnerService) ListRunnerTokens(ctx context.Context, req *connect.Request[pb.ListRunnerTokensRequest]) (*connect.Response[pb.ListRunnerTokensResponse], error) {
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return nil, toConnect(err)
	}
	resp := &pb.ListRunnerTokensResponse{}
	for _, t := range s.b.State().RunnerTokens() {
		t = proto.Clone(t).(*pb.RunnerToken)
		t.Hash = nil
		resp.Tokens = append(resp.Tokens, t)
	}
	return connect.NewResponse(resp), nil
}

// RevokeRunnerToken deletes an adoption token: no runner registers with
// it any more; those it adopted stay adopted (reject them to revoke them).
func (s *RunnerService) RevokeRunnerToken(ctx context.Context, req *connect.Request[pb.RevokeRunnerTokenRequest]) (*connect.Response[pb.RevokeRunnerTokenResponse], error) {
	if req.Msg.Id == "" {
		return nil, invalid("id: a token id (t-…) from `outpost runner token list` is required")
	}
	if _, err := s.b.Apply(ctx, fsm.DeleteRunnerTokenType, &pb.DeleteRunnerTokenEntry{Id: req.Msg.Id}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RevokeRunnerTokenResponse{}), nil
}
