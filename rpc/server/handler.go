package server

import (
	"net/http"

	"connectrpc.com/connect"
	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/jobspec/project"
	"github.com/outpost-run/outpost/rpc"
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
// and gRPC-Web.
//
// Every service runs behind one ACL guard (acl_guard.go), which checks
// each call against methodRules; Register returns it so the agent can put
// its other endpoints behind it too (Guard.HTTP).
func Register(mux *http.ServeMux, b Backend, logger hclog.Logger) *Guard {
	guard := NewGuard(b, logger.Named("acl"))
	// Compressing small messages costs more CPU than it saves on the
	// loopback and LAN links outpost runs on; big ones (job lists, logs)
	// still are. JSON is parsed strictly (strictJSON): it is what people
	// send.
	opts := append([]connect.HandlerOption{connect.WithReadMaxBytes(maxMessageBytes), connect.WithCompressMinBytes(32 << 10),
		connect.WithInterceptors(guard.Interceptor())}, strictJSONCodecs()...)
	public := func(path string, h http.Handler) { mux.Handle(path, limitUnaryBody(h, maxMessageBytes)) }
	public(outpostv1connect.NewJobServiceHandler(&JobService{b: b, projects: project.NewCache(parsedProjects), hc: rpc.NewHTTPClient()}, opts...))
	public(outpostv1connect.NewRunnerServiceHandler(&RunnerService{b: b, logger: logger.Named("runner-stream"), hc: rpc.NewHTTPClient(), reports: newReportBatcher(b, logger.Named("runner-reports"))}, opts...))
	public(outpostv1connect.NewAgentServiceHandler(&AgentService{b: b}, opts...))
	public(outpostv1connect.NewOperatorServiceHandler(&OperatorService{b: b}, opts...))
	public(outpostv1connect.NewProjectServiceHandler(&ProjectService{b: b}, opts...))
	public(outpostv1connect.NewACLServiceHandler(NewACLService(b, rpc.NewHTTPClient()), opts...))
	// Only servers call the cluster service, in binary; its JSON stays
	// connect's lenient one.
	path, h := outpostv1connect.NewClusterServiceHandler(&ClusterService{b: b}, connect.WithReadMaxBytes(maxClusterMessageBytes), connect.WithCompressMinBytes(32<<10),
		connect.WithInterceptors(guard.Interceptor()))
	mux.Handle(path, limitUnaryBody(h, maxClusterMessageBytes))
	return guard
}
