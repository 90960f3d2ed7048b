package server

import (
	"fmt"
	"net/http"
	"slices"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/internal/tlsutil"
	"github.com/outpost-run/outpost/jobspec/project"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// maxMessageBytes bounds any one request message from clients and
// runners; maxClusterMessageBytes the entries servers forward to the
// leader, which batch many runners' reports (see maxReportBatchBytes).
const (
	maxMessageBytes        = 4 << 20
	maxClusterMessageBytes = 64 << 20
)

// Register mounts every service on mux. The same handlers speak the connect
// protocol (JSON or protobuf over HTTP/1.1 or HTTP/2, so curl works), gRPC
// and gRPC-Web. interceptors wrap every service, the first outermost: the
// audit log's comes first, so it sees what the others decide.
//
// Every service runs behind one ACL guard (acl_guard.go), innermost,
// which checks each call against methodRules; Register returns it so the
// agent can put its other endpoints behind it too (Guard.HTTP).
func Register(mux *http.ServeMux, b Backend, logger hclog.Logger, interceptors ...connect.Interceptor) *Guard {
	guard := NewGuard(b, logger.Named("acl"))
	// Compressing small messages costs more CPU than it saves on the
	// loopback and LAN links outpost runs on; big ones (job lists, logs)
	// still are. JSON is parsed strictly (strictJSON): it is what people
	// send.
	wrap := connect.WithInterceptors(append(interceptors, guard.Interceptor())...)
	opts := append([]connect.HandlerOption{wrap, connect.WithReadMaxBytes(maxMessageBytes), connect.WithCompressMinBytes(32 << 10)}, strictJSONCodecs()...)
	public := func(path string, h http.Handler) { mux.Handle(path, limitUnaryBody(h, maxMessageBytes)) }
	public(outpostv1connect.NewJobServiceHandler(&JobService{b: b, projects: project.NewCache(parsedProjects)}, opts...))
	runners, runnerHandler := outpostv1connect.NewRunnerServiceHandler(&RunnerService{b: b, logger: logger.Named("runner-stream"), reports: newReportBatcher(b, logger.Named("runner-reports"))}, opts...)
	public(runners, requireRoleAt(outpostv1connect.RunnerServiceConnectProcedure, runnerStreamRoles, runnerHandler))
	public(outpostv1connect.NewAgentServiceHandler(&AgentService{b: b}, opts...))
	public(outpostv1connect.NewOperatorServiceHandler(&OperatorService{b: b}, opts...))
	public(outpostv1connect.NewProjectServiceHandler(&ProjectService{b: b}, opts...))
	public(outpostv1connect.NewACLServiceHandler(NewACLService(b), opts...))
	public(outpostv1connect.NewKeyringServiceHandler(&KeyringService{b: b}, opts...))
	// Only servers call the cluster service, in binary; its JSON stays
	// connect's lenient one.
	path, h := outpostv1connect.NewClusterServiceHandler(&ClusterService{b: b}, wrap, connect.WithReadMaxBytes(maxClusterMessageBytes), connect.WithCompressMinBytes(32<<10))
	mux.Handle(path, requireRole(serverRoles, limitUnaryBody(h, maxClusterMessageBytes)))
	return guard
}

// The role gates of the HTTP port, over TLS (a plain port is -dev's or
// -insecure-no-tls's, and has none): the internal API takes only servers,
// the runner stream only runners. The stream also takes a server's
// certificate: the runner inside a server agent dials its own server
// with it, and a server's certificate already opens the internal API.
var (
	serverRoles       = []tlsutil.Role{tlsutil.RoleServer}
	runnerStreamRoles = []tlsutil.Role{tlsutil.RoleRunner, tlsutil.RoleServer}
)

// requireRole refuses, with connect's PermissionDenied, a TLS request
// whose verified client certificate carries none of roles.
func requireRole(roles []tlsutil.Role, next http.Handler) http.Handler {
	roleErrors := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && !slices.Contains(roles, tlsutil.PeerRole(r.Context())) {
			err := tlsutil.CheckRequestRole(r, roles[0])
			_ = roleErrors.Write(w, r, connect.NewError(connect.CodePermissionDenied,
				fmt.Errorf("%s is only for %ss: %w", r.URL.Path, roles[0], err)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireRoleAt is requireRole for one procedure of a service.
func requireRoleAt(procedure string, roles []tlsutil.Role, next http.Handler) http.Handler {
	gated := requireRole(roles, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == procedure {
			gated.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
