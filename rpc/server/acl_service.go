package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// ACLService manages policies, tokens and users, and logs users in.
type ACLService struct {
	b Backend
	// Failed logins, per user and per source address, on this server.
	byUser, byAddr *acl.Throttle

	leaderMu   sync.Mutex
	leaderAddr string
	leader     outpostv1connect.ACLServiceClient
}

var _ outpostv1connect.ACLServiceHandler = (*ACLService)(nil)

// NewACLService returns the ACL service of a server.
func NewACLService(b Backend) *ACLService {
	return &ACLService{b: b, byUser: acl.NewThrottle(acl.MaxUserFailures), byAddr: acl.NewThrottle(acl.MaxAddrFailures)}
}

// SecretPrefix starts every ACL secret, so one is recognizable in a leak.
const SecretPrefix = "opt_"

func newToken(name string, policies []string, ttl time.Duration, now time.Time) (*pb.ACLToken, string) {
	secret := rpc.NewSecret(SecretPrefix)
	t := &pb.ACLToken{AccessorId: rpc.NewUUID(), Hash: acl.HashSecret(secret), Name: name, Policies: policies, CreatedAt: timestamppb.New(now)}
	if ttl > 0 {
		t.ExpiresAt = timestamppb.New(now.Add(ttl))
	}
	return t, secret
}

// public strips what a token's reader must not see.
func public(t *pb.ACLToken) *pb.ACLToken {
	t = proto.Clone(t).(*pb.ACLToken)
	t.Hash = nil
	return t
}

func publicUser(u *pb.ACLUser) *pb.ACLUser {
	return &pb.ACLUser{Name: u.Name, Policies: u.Policies, CreateIndex: u.CreateIndex, ModifyIndex: u.ModifyIndex}
}

// Bootstrap makes the first management token. It runs on the leader,
// which holds the reset file; another server hands the call on.
func (s *ACLService) Bootstrap(ctx context.Context, req *connect.Request[pb.ACLBootstrapRequest]) (*connect.Response[pb.ACLBootstrapResponse], error) {
	if !s.b.ACL().Enabled {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("ACLs are disabled on this server (acl { enabled = false }); there is nothing to bootstrap"))
	}
	addr, err := s.b.LeaderAddr(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	if addr != "" {
		return s.leaderClient(addr).Bootstrap(ctx, forwarded(req))
	}
	reset, err := s.b.ACLBootstrapReset()
	if err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	tok, secret := newToken("bootstrap management token", nil, 0, time.Now())
	tok.Management = true
	if _, err := s.b.Apply(ctx, fsm.ACLBootstrapType, &pb.ACLBootstrapEntry{Token: tok, ResetIndex: reset}); err != nil {
		var be *state.BootstrapError
		if errors.As(err, &be) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, be)
		}
		return nil, toConnect(err)
	}
	if reset != 0 {
		s.b.ClearACLBootstrapReset()
	}
	return connect.NewResponse(&pb.ACLBootstrapResponse{Token: public(tok), Secret: secret}), nil
}

func (s *ACLService) leaderClient(addr string) outpostv1connect.ACLServiceClient {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leaderAddr != addr {
		s.leaderAddr, s.leader = addr, outpostv1connect.NewACLServiceClient(s.b.PeerHTTPClient(), s.b.PeerURL(addr))
	}
	return s.leader
}

// UpsertPolicy creates or replaces a policy; its rules must parse.
func (s *ACLService) UpsertPolicy(ctx context.Context, req *connect.Request[pb.UpsertPolicyRequest]) (*connect.Response[pb.UpsertPolicyResponse], error) {
	m := req.Msg
	if err := validate.ACLName("policy name", m.Name); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if _, err := acl.ParsePolicy(m.Name+".hcl", []byte(m.Rules)); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if _, err := s.b.Apply(ctx, fsm.ACLPolicyUpsertType, &pb.ACLPolicyUpsertEntry{Policy: &pb.ACLPolicy{Name: m.Name, Description: m.Description, Rules: m.Rules}}); err != nil {
		return nil, toConnect(err)
	}
	p, err := s.b.State().ACLPolicy(m.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.UpsertPolicyResponse{Policy: p}), nil
}

// ListPolicies lists policies.
func (s *ACLService) ListPolicies(ctx context.Context, req *connect.Request[pb.ListPoliciesRequest]) (*connect.Response[pb.ListPoliciesResponse], error) {
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ListPoliciesResponse{Policies: s.b.State().ACLPolicies()}), nil
}

// GetPolicy returns one policy.
func (s *ACLService) GetPolicy(ctx context.Context, req *connect.Request[pb.GetPolicyRequest]) (*connect.Response[pb.GetPolicyResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a policy name is required")
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	p, err := s.b.State().ACLPolicy(req.Msg.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetPolicyResponse{Policy: p}), nil
}

// DeletePolicy removes a policy.
func (s *ACLService) DeletePolicy(ctx context.Context, req *connect.Request[pb.DeletePolicyRequest]) (*connect.Response[pb.DeletePolicyResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a policy name is required")
	}
	if _, err := s.b.Apply(ctx, fsm.ACLPolicyDeleteType, &pb.ACLPolicyDeleteEntry{Name: req.Msg.Name}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeletePolicyResponse{}), nil
}

// checkPolicies refuses names of policies that do not exist, so a typo
// does not make a token that can do nothing.
func (s *ACLService) checkPolicies(ctx context.Context, names []string) error {
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return toConnect(err)
	}
	st := s.b.State()
	for _, n := range names {
		if _, err := st.ACLPolicy(n); err != nil {
			return invalid("policy %q does not exist; create it with `outpost acl policy apply %s FILE`", n, n)
		}
	}
	return nil
}

// maxTokenName bounds a token's name.
const maxTokenName = 256

// CreateToken makes a token with policies and, optionally, a lifetime.
func (s *ACLService) CreateToken(ctx context.Context, req *connect.Request[pb.CreateTokenRequest]) (*connect.Response[pb.CreateTokenResponse], error) {
	m := req.Msg
	if len(m.Name) > maxTokenName || strings.ContainsFunc(m.Name, func(r rune) bool { return r < ' ' }) {
		return nil, invalid("name: at most %d characters, no control characters", maxTokenName)
	}
	if len(m.Policies) == 0 && !m.Management {
		return nil, invalid("policies: a token needs at least one policy (-policy NAME)")
	}
	ttl := m.Ttl.AsDuration()
	if m.Ttl != nil && ttl < time.Second {
		return nil, invalid("ttl: must be at least 1s, or unset for a token that does not expire")
	}
	if err := s.checkPolicies(ctx, m.Policies); err != nil {
		return nil, err
	}
	tok, secret := newToken(m.Name, m.Policies, ttl, time.Now())
	tok.Management = m.Management
	if _, err := s.b.Apply(ctx, fsm.ACLTokenUpsertType, &pb.ACLTokenUpsertEntry{Token: tok}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.CreateTokenResponse{Token: public(tok), Secret: secret}), nil
}

// ListTokens lists tokens, without their hashes.
func (s *ACLService) ListTokens(ctx context.Context, req *connect.Request[pb.ListTokensRequest]) (*connect.Response[pb.ListTokensResponse], error) {
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	var out []*pb.ACLToken
	for _, t := range s.b.State().ACLTokens() {
		out = append(out, public(t))
	}
	return connect.NewResponse(&pb.ListTokensResponse{Tokens: out}), nil
}

// GetToken returns a token by accessor, or the caller's own ("self").
func (s *ACLService) GetToken(ctx context.Context, req *connect.Request[pb.GetTokenRequest]) (*connect.Response[pb.GetTokenResponse], error) {
	id := req.Msg.AccessorId
	if id == "" {
		return nil, invalid("accessor_id: an accessor id or \"self\" is required")
	}
	if id == "self" {
		who, _ := acl.FromContext(ctx)
		if who.AccessorID == "" {
			return nil, connect.NewError(connect.CodeNotFound, errors.New("this call carries no token"))
		}
		id = who.AccessorID
	} else if err := authorize(ctx, acl.AreaACL, acl.Read, ""); err != nil {
		return nil, err
	}
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	t, err := s.b.State().ACLToken(id)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.GetTokenResponse{Token: public(t)}), nil
}

// RevokeToken deletes a token; each server refuses it once it has applied
// the deletion.
func (s *ACLService) RevokeToken(ctx context.Context, req *connect.Request[pb.RevokeTokenRequest]) (*connect.Response[pb.RevokeTokenResponse], error) {
	if req.Msg.AccessorId == "" {
		return nil, invalid("accessor_id: an accessor id is required")
	}
	if _, err := s.b.Apply(ctx, fsm.ACLTokenDeleteType, &pb.ACLTokenDeleteEntry{AccessorIds: []string{req.Msg.AccessorId}}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RevokeTokenResponse{}), nil
}

func hashUser(u *pb.ACLUser, password string) error {
	p := acl.DefaultPasswordParams
	hash, salt, err := acl.HashPassword(password, p)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	u.PasswordHash, u.Salt = hash, salt
	u.ArgonTime, u.ArgonMemoryKib, u.ArgonThreads = p.Time, p.MemoryKiB, uint32(p.Threads)
	return nil
}

// CreateUser adds a user who can log in with a password.
func (s *ACLService) CreateUser(ctx context.Context, req *connect.Request[pb.CreateUserRequest]) (*connect.Response[pb.CreateUserResponse], error) {
	m := req.Msg
	if err := validate.ACLName("user name", m.Name); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := s.checkPolicies(ctx, m.Policies); err != nil {
		return nil, err
	}
	if _, err := s.b.State().ACLUser(m.Name); err == nil {
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("user %q exists; change its password with `outpost acl user passwd %s`", m.Name, m.Name))
	}
	u := &pb.ACLUser{Name: m.Name, Policies: m.Policies}
	if err := hashUser(u, m.Password); err != nil {
		return nil, err
	}
	if _, err := s.b.Apply(ctx, fsm.ACLUserUpsertType, &pb.ACLUserUpsertEntry{User: u}); err != nil {
		return nil, toConnect(err)
	}
	got, err := s.b.State().ACLUser(m.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.CreateUserResponse{User: publicUser(got)}), nil
}

// ListUsers lists users, without their password hashes.
func (s *ACLService) ListUsers(ctx context.Context, req *connect.Request[pb.ListUsersRequest]) (*connect.Response[pb.ListUsersResponse], error) {
	if err := s.b.ReadBarrier(ctx, req.Msg.Stale); err != nil {
		return nil, toConnect(err)
	}
	var out []*pb.ACLUser
	for _, u := range s.b.State().ACLUsers() {
		out = append(out, publicUser(u))
	}
	return connect.NewResponse(&pb.ListUsersResponse{Users: out}), nil
}

// DeleteUser removes a user and revokes its login tokens.
func (s *ACLService) DeleteUser(ctx context.Context, req *connect.Request[pb.DeleteUserRequest]) (*connect.Response[pb.DeleteUserResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a user name is required")
	}
	if _, err := s.b.Apply(ctx, fsm.ACLUserDeleteType, &pb.ACLUserDeleteEntry{Name: req.Msg.Name}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.DeleteUserResponse{}), nil
}

// SetPassword changes a user's password.
func (s *ACLService) SetPassword(ctx context.Context, req *connect.Request[pb.SetPasswordRequest]) (*connect.Response[pb.SetPasswordResponse], error) {
	if req.Msg.Name == "" {
		return nil, invalid("name: a user name is required")
	}
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return nil, toConnect(err)
	}
	old, err := s.b.State().ACLUser(req.Msg.Name)
	if err != nil {
		return nil, toConnect(err)
	}
	u := proto.Clone(old).(*pb.ACLUser)
	if err := hashUser(u, req.Msg.Password); err != nil {
		return nil, err
	}
	if _, err := s.b.Apply(ctx, fsm.ACLUserUpsertType, &pb.ACLUserUpsertEntry{User: u}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.SetPasswordResponse{}), nil
}

var errBadLogin = connect.NewError(connect.CodeUnauthenticated, errors.New("login failed: unknown user or wrong password"))

// Login exchanges a user's password for a token that expires after
// login_token_ttl. Failures are throttled per user and per address.
func (s *ACLService) Login(ctx context.Context, req *connect.Request[pb.LoginRequest]) (*connect.Response[pb.LoginResponse], error) {
	if !s.b.ACL().Enabled {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("ACLs are disabled on this server: no login is needed"))
	}
	m := req.Msg
	if m.User == "" {
		return nil, invalid("user: a user name is required")
	}
	addr := req.Peer().Addr
	if host, _, err := net.SplitHostPort(addr); err == nil {
		addr = host
	}
	userKey, addrKey := "user:"+m.User, "addr:"+addr
	if wait := max(s.byUser.Check(userKey), s.byAddr.Check(addrKey)); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("too many failed logins: retry after %ds", secs))
		err.Meta().Set("Retry-After", fmt.Sprint(secs))
		return nil, err
	}
	if err := s.b.ReadBarrier(ctx, false); err != nil {
		return nil, toConnect(err)
	}
	u, err := s.b.State().ACLUser(m.User)
	if err != nil {
		// Hash anyway, so an unknown user takes as long as a wrong
		// password and the answer's timing does not tell them apart.
		u = &pb.ACLUser{PasswordHash: make([]byte, 32), Salt: make([]byte, 16), ArgonTime: acl.DefaultPasswordParams.Time,
			ArgonMemoryKib: acl.DefaultPasswordParams.MemoryKiB, ArgonThreads: uint32(acl.DefaultPasswordParams.Threads)}
	}
	ok := acl.CheckPassword(m.Password, u.PasswordHash, u.Salt,
		acl.PasswordParams{Time: u.ArgonTime, MemoryKiB: u.ArgonMemoryKib, Threads: uint8(u.ArgonThreads)}) && err == nil
	if !ok {
		s.byUser.Fail(userKey)
		s.byAddr.Fail(addrKey)
		return nil, errBadLogin
	}
	s.byUser.Reset(userKey)
	tok, secret := newToken("login: "+m.User, nil, s.b.ACL().LoginTokenTTL, time.Now())
	tok.User = m.User
	if _, err := s.b.Apply(ctx, fsm.ACLTokenUpsertType, &pb.ACLTokenUpsertEntry{Token: tok}); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.LoginResponse{Token: public(tok), Secret: secret}), nil
}

// Logout revokes the token the call carries.
func (s *ACLService) Logout(ctx context.Context, req *connect.Request[pb.LogoutRequest]) (*connect.Response[pb.LogoutResponse], error) {
	who, _ := acl.FromContext(ctx)
	if who.AccessorID == "" {
		return nil, errNoToken
	}
	if _, err := s.b.Apply(ctx, fsm.ACLTokenDeleteType, &pb.ACLTokenDeleteEntry{AccessorIds: []string{who.AccessorID}}); err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.LogoutResponse{}), nil
}
