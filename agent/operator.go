package agent

import (
	"context"
	"fmt"
	"maps"

	"connectrpc.com/connect"
	"github.com/hashicorp/raft"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
	rpcserver "github.com/outpost-run/outpost/rpc/server"
)

// Members implements rpcserver.Backend.
func (s *Server) Members() []*pb.Member {
	if s.gossip == nil {
		return []*pb.Member{{Name: s.cfg.NodeID, Address: s.raftAddr, Status: "alive", Role: RoleServer,
			Meta: map[string]string{"http": s.httpAddr, "version": Version}}}
	}
	var out []*pb.Member
	for _, m := range s.gossip.Members() {
		meta := map[string]string{}
		if m.Meta.HTTP != "" {
			meta["http"] = m.Meta.HTTP
		}
		if m.Meta.Raft != "" {
			meta["raft"] = m.Meta.Raft
		}
		if m.Meta.Version != "" {
			meta["version"] = m.Meta.Version
		}
		maps.Copy(meta, m.Meta.Labels)
		out = append(out, &pb.Member{Name: m.Name, Address: m.Addr, Status: m.Status, Role: m.Meta.Role, Meta: meta})
	}
	return out
}

// RaftPeers implements rpcserver.Backend.
func (s *Server) RaftPeers(ctx context.Context, stale bool) (*pb.RaftPeersResponse, error) {
	if err := s.ReadBarrier(ctx, stale); err != nil {
		return nil, err
	}
	fut := s.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, fmt.Errorf("reading raft configuration: %w", err)
	}
	_, leader := s.raft.LeaderWithID()
	resp := &pb.RaftPeersResponse{Index: fut.Index()}
	for _, srv := range fut.Configuration().Servers {
		resp.Peers = append(resp.Peers, &pb.RaftPeer{
			Id: string(srv.ID), Address: string(srv.Address),
			Leader: srv.ID == leader, Voter: srv.Suffrage == raft.Voter,
		})
	}
	return resp, nil
}

// RemovePeer implements rpcserver.Backend; a follower hands the request to the
// leader, the only server that may change the configuration.
func (s *Server) RemovePeer(ctx context.Context, id string) error {
	leader, err := s.leaderHTTP(ctx)
	if err != nil {
		return err
	}
	if leader != "" {
		c := outpostv1connect.NewOperatorServiceClient(s.peers.hc, s.PeerURL(leader))
		req := connect.NewRequest(&pb.RemovePeerRequest{Id: id})
		if tok := rpcserver.CallerToken(ctx); tok != "" {
			// The leader checks the caller's token again.
			req.Header().Set(rpc.TokenHeader, tok)
		}
		_, err := c.RemovePeer(ctx, req)
		return err
	}
	fut := s.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return fmt.Errorf("reading raft configuration: %w", err)
	}
	for _, srv := range fut.Configuration().Servers {
		if string(srv.ID) != id && string(srv.Address) != id {
			continue
		}
		if srv.ID == raft.ServerID(s.cfg.NodeID) {
			return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s is the leader; stop it (it hands over leadership) or remove it from another server after a new leader is elected", id))
		}
		if err := s.raft.RemoveServer(srv.ID, 0, applyTimeout).Error(); err != nil {
			return fmt.Errorf("%w: removing %s: %v", rpcserver.ErrNoLeader, id, err)
		}
		if s.gossip != nil {
			s.gossip.Forget(string(srv.ID))
		}
		s.logger.Info("removed raft peer", "id", srv.ID, "address", srv.Address)
		return nil
	}
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("no raft peer with id or address %q; see `outpost operator raft list-peers`", id))
}
