package server

import (
	"context"

	"connectrpc.com/connect"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// OperatorService serves cluster administration.
type OperatorService struct {
	b Backend
}

var _ outpostv1connect.OperatorServiceHandler = (*OperatorService)(nil)

// Members lists the gossip pool as this server sees it.
func (s *OperatorService) Members(context.Context, *connect.Request[pb.MembersRequest]) (*connect.Response[pb.MembersResponse], error) {
	return connect.NewResponse(&pb.MembersResponse{Members: s.b.Members()}), nil
}

// RaftPeers lists the Raft configuration.
func (s *OperatorService) RaftPeers(ctx context.Context, req *connect.Request[pb.RaftPeersRequest]) (*connect.Response[pb.RaftPeersResponse], error) {
	resp, err := s.b.RaftPeers(ctx, req.Msg.Stale)
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(resp), nil
}

// RemovePeer removes a server from Raft.
func (s *OperatorService) RemovePeer(ctx context.Context, req *connect.Request[pb.RemovePeerRequest]) (*connect.Response[pb.RemovePeerResponse], error) {
	if req.Msg.Id == "" {
		return nil, invalid("id: a server name or raft address is required")
	}
	if err := s.b.RemovePeer(ctx, req.Msg.Id); err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&pb.RemovePeerResponse{}), nil
}
