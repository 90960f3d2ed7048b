package server

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// ClusterService is spoken between servers: forwarded writes, read
// indexes, and followers' runner reports to the leader.
type ClusterService struct {
	b Backend
}

var _ outpostv1connect.ClusterServiceHandler = (*ClusterService)(nil)

// Apply commits a forwarded log entry.
func (s *ClusterService) Apply(ctx context.Context, req *connect.Request[pb.ApplyRequest]) (*connect.Response[pb.ApplyResponse], error) {
	if len(req.Msg.Entry) == 0 {
		return nil, invalid("entry: an encoded log entry is required")
	}
	resp, err := s.b.ApplyEntry(ctx, req.Msg.Entry)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(resp), nil
}

// ReadIndex returns the leader's applied index after confirming it leads.
func (s *ClusterService) ReadIndex(ctx context.Context, _ *connect.Request[pb.ReadIndexRequest]) (*connect.Response[pb.ReadIndexResponse], error) {
	idx, err := s.b.LeaderReadIndex(ctx)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.ReadIndexResponse{Index: idx}), nil
}

// RunnerHeartbeats records a follower's connected runners; a success tells
// the follower it may confirm their leases.
func (s *ClusterService) RunnerHeartbeats(ctx context.Context, req *connect.Request[pb.RunnerHeartbeatsRequest]) (*connect.Response[pb.RunnerHeartbeatsResponse], error) {
	m := req.Msg
	switch {
	case m.Server == "":
		return nil, invalid("server: the reporting server's name is required")
	case len(m.SilentMs) != 0 && len(m.SilentMs) != len(m.RunnerIds):
		return nil, invalid("silent_ms: %d values for %d runner_ids; give one per runner or none", len(m.SilentMs), len(m.RunnerIds))
	}
	if err := s.b.RemoteRunners(ctx, m.Server, m.RunnerIds, m.SilentMs); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RunnerHeartbeatsResponse{}), nil
}
