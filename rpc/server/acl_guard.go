package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/acl"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// ACLSettings are a server's ACL settings (the agent's acl block).
type ACLSettings struct {
	Enabled bool
	// LoginTokenTTL is how long a token from Login lives.
	LoginTokenTTL time.Duration
}

// TokenHeader is the header outpost's own clients send the token in;
// `Authorization: Bearer <secret>` works as well.
const TokenHeader = rpc.TokenHeader

// tokenFrom returns the secret a request carries, "" for none.
func tokenFrom(h http.Header) string {
	if v := strings.TrimSpace(h.Get(TokenHeader)); v != "" {
		return v
	}
	if v := h.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}

// Guard is the one ACL check every request passes: the connect
// interceptor for every service, and the HTTP middleware for the other
// endpoints. It resolves the token, checks methodRules (or httpRules) and
// leaves the caller's identity and authorizer in the context.
type Guard struct {
	b      Backend
	logger hclog.Logger

	mu       sync.Mutex
	policies map[string]cachedPolicy
}

type cachedPolicy struct {
	modifyIndex uint64
	policy      *acl.Policy
}

// NewGuard returns the guard of a server.
func NewGuard(b Backend, logger hclog.Logger) *Guard {
	return &Guard{b: b, logger: logger, policies: map[string]cachedPolicy{}}
}

type authzKey struct{}

type secretKey struct{}

// CallerToken is the secret the call being served came with, for a
// server that hands the call on to the leader, which checks it again.
func CallerToken(ctx context.Context) string {
	s, _ := ctx.Value(secretKey{}).(string)
	return s
}

// authzFrom is the caller's authorizer; without the guard's, nothing is
// allowed.
func authzFrom(ctx context.Context) *acl.Authorizer {
	if a, ok := ctx.Value(authzKey{}).(*acl.Authorizer); ok {
		return a
	}
	return acl.Deny()
}

// authorize is the handlers' check of a capability on a known object:
// nil, or PermissionDenied naming what is needed.
func authorize(ctx context.Context, area acl.Area, l acl.Level, project string) error {
	if authzFrom(ctx).Allows(area, l, project) {
		return nil
	}
	return denied(area, l, project)
}

func denied(area acl.Area, l acl.Level, project string) error {
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("permission denied: this needs %s; ask an operator for a token with a policy that grants it", acl.Need(area, l, project)))
}

// canRead reports whether the caller may read project p: lists use it
// to leave out what it may not.
func canRead(ctx context.Context, p string) bool {
	return authzFrom(ctx).Project(p) >= acl.Read
}

var errNoToken = connect.NewError(connect.CodeUnauthenticated,
	errors.New("this call needs an ACL token: pass -token, set OUTPOST_TOKEN or run `outpost login`"))

// check resolves the caller and applies rule; it returns the context the
// handler runs with.
func (g *Guard) check(ctx context.Context, procedure string, rule Rule, ok bool, h http.Header) (context.Context, error) {
	if !ok {
		// A method without a row is refused: the table is the list of
		// what may be called.
		return ctx, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s has no ACL rule", procedure))
	}
	switch rule.Access {
	case AccessOpen, AccessCertificate, AccessBootstrap, AccessLogin:
		ctx = context.WithValue(ctx, authzKey{}, acl.Deny())
		return acl.Resolved(ctx, acl.Identity{}), nil
	}
	secret := tokenFrom(h)
	id, authz, err := g.resolve(ctx, secret)
	if err != nil {
		return ctx, err
	}
	ctx = acl.Resolved(context.WithValue(ctx, authzKey{}, authz), id)
	if secret != "" {
		ctx = context.WithValue(ctx, secretKey{}, secret)
	}
	switch rule.Access {
	case AccessToken:
		if id.AccessorID == "" && !authz.IsManagement() {
			return ctx, errNoToken
		}
	case AccessGlobal:
		if !authz.Allows(rule.Area, rule.Level, "") {
			return ctx, denied(rule.Area, rule.Level, "")
		}
	case AccessProject, AccessFiltered, AccessAnyProject:
		if !authz.AnyProject(rule.Level) {
			return ctx, denied(rule.Area, rule.Level, "")
		}
	}
	return ctx, nil
}

// resolve finds the token of secret and its authorizer. ACLs off, every
// caller may do everything.
func (g *Guard) resolve(ctx context.Context, secret string) (acl.Identity, *acl.Authorizer, error) {
	if !g.b.ACL().Enabled {
		return acl.Identity{}, acl.Management(), nil
	}
	st := g.b.State()
	if secret == "" {
		return acl.Identity{}, g.authorizer(st, []string{acl.AnonymousPolicy}), nil
	}
	hash := acl.HashSecret(secret)
	tok, err := st.ACLTokenByHash(hash)
	if errors.Is(err, state.ErrNotFound) {
		// A token just created on the leader may not have reached this
		// server, and a leader just elected may not have replayed the
		// log yet: one barrier (Unavailable, which clients retry, while
		// there is no ready leader), and a second look.
		if berr := g.b.ReadBarrier(ctx, false); berr != nil {
			return acl.Identity{}, nil, toConnect(berr)
		}
		st = g.b.State()
		tok, err = st.ACLTokenByHash(hash)
	}
	if err != nil {
		return acl.Identity{}, nil, connect.NewError(connect.CodeUnauthenticated,
			errors.New("ACL token not found: it was revoked, expired or never existed; run `outpost login` or pass another with -token"))
	}
	id := acl.Identity{AccessorID: tok.AccessorId, TokenName: tok.Name, User: tok.User}
	if tok.ExpiresAt != nil && !time.Now().Before(tok.ExpiresAt.AsTime()) {
		return id, nil, connect.NewError(connect.CodeUnauthenticated,
			fmt.Errorf("ACL token %s expired at %s; run `outpost login` for a new one", tok.AccessorId, tok.ExpiresAt.AsTime().UTC().Format(time.RFC3339)))
	}
	if tok.Management {
		return id, acl.Management(), nil
	}
	names := tok.Policies
	if tok.User != "" {
		u, err := st.ACLUser(tok.User)
		if err != nil {
			return id, nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("ACL token %s: its user %q no longer exists", tok.AccessorId, tok.User))
		}
		names = append(append([]string(nil), names...), u.Policies...)
	}
	return id, g.authorizer(st, names), nil
}

// authorizer merges the named policies; a name without a policy (deleted
// since) gives nothing.
func (g *Guard) authorizer(st *state.Store, names []string) *acl.Authorizer {
	var ps []*acl.Policy
	for _, n := range names {
		p, err := st.ACLPolicy(n)
		if err != nil {
			continue
		}
		if parsed := g.parsed(p); parsed != nil {
			ps = append(ps, parsed)
		}
	}
	return acl.NewAuthorizer(ps...)
}

// parsed returns p's rules, parsed once per version of p.
func (g *Guard) parsed(p *pb.ACLPolicy) *acl.Policy {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.policies[p.Name]; ok && c.modifyIndex == p.ModifyIndex {
		return c.policy
	}
	parsed, err := acl.ParsePolicy(p.Name+".hcl", []byte(p.Rules))
	if err != nil {
		// Stored policies were parsed at upsert; one that no longer
		// parses (a later, stricter version) grants nothing.
		g.logger.Warn("ACL policy does not parse; it grants nothing", "policy", p.Name, "error", err)
		parsed = nil
	}
	g.policies[p.Name] = cachedPolicy{modifyIndex: p.ModifyIndex, policy: parsed}
	return parsed
}

// Interceptor is the connect interceptor of every service.
func (g *Guard) Interceptor() connect.Interceptor { return guardInterceptor{g} }

type guardInterceptor struct{ g *Guard }

func (i guardInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		rule, ok := methodRules[req.Spec().Procedure]
		ctx, err := i.g.check(ctx, req.Spec().Procedure, rule, ok, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i guardInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i guardInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		rule, ok := methodRules[conn.Spec().Procedure]
		ctx, err := i.g.check(ctx, conn.Spec().Procedure, rule, ok, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// HTTP wraps the endpoints of httpRules that are not connect methods
// (snapshots, profiles): the same resolution, refused with the HTTP
// status of the connect code.
func (g *Guard) HTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rule, ok := Rule{}, false
		for prefix, ru := range httpRules {
			if strings.HasPrefix(r.URL.Path, prefix) {
				rule, ok = ru, true
				break
			}
		}
		ctx, err := g.check(r.Context(), r.URL.Path, rule, ok, r.Header)
		if err != nil {
			code := connect.CodeOf(err)
			status := http.StatusForbidden
			if code == connect.CodeUnauthenticated {
				status = http.StatusUnauthorized
			} else if code != connect.CodePermissionDenied {
				status = http.StatusServiceUnavailable
			}
			var ce *connect.Error
			msg := err.Error()
			if errors.As(err, &ce) {
				msg = ce.Message()
			}
			http.Error(w, msg, status)
			return
		}
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// forwarded is req as this server hands it on to the leader: the same
// message and the caller's token, which the leader checks again.
func forwarded[T any](req *connect.Request[T]) *connect.Request[T] {
	out := connect.NewRequest(req.Msg)
	for _, h := range []string{TokenHeader, "Authorization"} {
		if v := req.Header().Get(h); v != "" {
			out.Header().Set(h, v)
		}
	}
	return out
}
