package tlsutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// PeerRoleOf is the role a peer's verified certificate proves in domain,
// or "" when it presented none (or the connection is not TLS).
func PeerRoleOf(cs *tls.ConnectionState, domain string) Role {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	leaf := cs.VerifiedChains[0][0]
	for _, r := range Roles {
		if slices.Contains(leaf.DNSNames, r.Name(domain)) {
			return r
		}
	}
	return ""
}

// CheckRole fails unless the peer's verified certificate carries
// <want>.<domain>; the error says what was needed and what was seen.
func CheckRole(cs *tls.ConnectionState, want Role, domain string) error {
	if PeerRoleOf(cs, domain) == want {
		return nil
	}
	return fmt.Errorf("a %s certificate (%s) is required; %s", want, want.Name(domain), describePeer(cs))
}

// describePeer says what certificate a peer presented, for refusals.
func describePeer(cs *tls.ConnectionState) string {
	switch {
	case cs == nil:
		return "the connection is not TLS"
	case len(cs.PeerCertificates) == 0:
		return "no client certificate was presented"
	case len(cs.VerifiedChains) == 0:
		return "the certificate presented was not verified"
	}
	leaf := cs.PeerCertificates[0]
	names := leaf.DNSNames
	if len(names) == 0 {
		names = []string{leaf.Subject.CommonName}
	}
	return "the certificate presented is for " + strings.Join(names, ", ")
}

// DescribePeer is describePeer for other packages' refusals.
func DescribePeer(cs *tls.ConnectionState) string { return describePeer(cs) }

type peerKey struct{}

type peer struct {
	role   Role
	domain string
}

// WithPeerRole returns ctx carrying the peer's verified role.
func WithPeerRole(ctx context.Context, r Role, domain string) context.Context {
	return context.WithValue(ctx, peerKey{}, peer{role: r, domain: domain})
}

// PeerRole is the role the caller's verified certificate proves, "" when
// it presented none or the port is not TLS.
func PeerRole(ctx context.Context) Role {
	p, _ := ctx.Value(peerKey{}).(peer)
	return p.role
}

// PeerRoleHandler puts the role of each request's verified client
// certificate in its context (PeerRole), for the role gates and the ACL
// interceptor.
func PeerRoleHandler(domain string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r = r.WithContext(WithPeerRole(r.Context(), PeerRoleOf(r.TLS, domain), domain))
		}
		next.ServeHTTP(w, r)
	})
}

// CheckRequestRole fails unless a TLS request's verified certificate
// carries want (see CheckRole); a request that is not over TLS passes,
// as the HTTP port is plain only in -dev or with -insecure-no-tls.
func CheckRequestRole(r *http.Request, want Role) error {
	if r.TLS == nil {
		return nil
	}
	p, ok := r.Context().Value(peerKey{}).(peer)
	if !ok {
		p.domain = DefaultDomain
	}
	return CheckRole(r.TLS, want, p.domain)
}
