package server

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// AgentService answers questions about the agent itself.
type AgentService struct {
	b Backend
}

var _ outpostv1connect.AgentServiceHandler = (*AgentService)(nil)

// Status returns the agent's name, version and view of the leader.
func (s *AgentService) Status(context.Context, *connect.Request[pb.StatusRequest]) (*connect.Response[pb.StatusResponse], error) {
	return connect.NewResponse(s.b.Status()), nil
}
