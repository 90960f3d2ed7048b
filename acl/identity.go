package acl

import "context"

// Identity is who made a request, as far as the server could tell: the
// token's accessor and name, and the user it was issued to at login. Its
// zero value is the anonymous caller.
type Identity struct {
	AccessorID string
	TokenName  string
	User       string
}

// Who is how the audit log names the caller: the user, else the token's
// accessor, else "anonymous".
func (id Identity) Who() string {
	switch {
	case id.User != "":
		return "user:" + id.User
	case id.AccessorID != "":
		return "token:" + id.AccessorID
	}
	return "anonymous"
}

type slotKey struct{}

// WithSlot returns a context with an empty identity slot. The outermost
// interceptor (the audit log) adds it, so that it learns who called after
// the inner ACL interceptor, whose context it cannot see, has resolved the
// token.
func WithSlot(ctx context.Context) (context.Context, *Identity) {
	id := &Identity{}
	return context.WithValue(ctx, slotKey{}, id), id
}

// Resolved records the caller in the context's slot, if it has one, and
// returns a context that carries it for the handlers below.
func Resolved(ctx context.Context, id Identity) context.Context {
	if slot, ok := ctx.Value(slotKey{}).(*Identity); ok {
		*slot = id
	}
	return context.WithValue(ctx, identityKey{}, id)
}

type identityKey struct{}

// FromContext returns the caller Resolved put in the context.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
