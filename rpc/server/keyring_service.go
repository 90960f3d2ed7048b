package server

import (
	"context"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
	"github.com/outpost-run/outpost/internal/validate"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
	"github.com/outpost-run/outpost/rpc/outpostv1/outpostv1connect"
)

// KeyringService manages the gossip encryption keyring, which is cluster
// state: a change is one Raft entry that every server applies to its
// gossip, and that runners receive over their stream.
type KeyringService struct {
	b Backend
}

var _ outpostv1connect.KeyringServiceHandler = (*KeyringService)(nil)

// GossipKeyring lists the keyring, or installs, uses or removes a key and
// then lists it.
func (s *KeyringService) GossipKeyring(ctx context.Context, req *connect.Request[pb.GossipKeyringRequest]) (*connect.Response[pb.GossipKeyringResponse], error) {
	m := req.Msg
	switch m.Op {
	case "", "list":
		if m.Key != "" {
			return nil, invalid("key: list takes no key")
		}
		if err := s.b.ReadBarrier(ctx, false); err != nil {
			return nil, toConnect(err)
		}
	case state.KeyringInstall, state.KeyringUse, state.KeyringRemove:
		if err := validate.GossipKey(m.Key); err != nil {
			return nil, invalid("key: %v", err)
		}
		if _, err := s.b.Apply(ctx, fsm.GossipKeyringType, &pb.GossipKeyringEntry{Op: m.Op, Key: m.Key}); err != nil {
			return nil, toConnect(err)
		}
	default:
		return nil, invalid("op: %q is not one of list, install, use, remove", m.Op)
	}
	resp := &pb.GossipKeyringResponse{}
	k := s.b.State().GossipKeyring(nil)
	if k == nil {
		return connect.NewResponse(resp), nil
	}
	holders, members := s.b.GossipKeyHolders(k.Keys)
	resp.Servers, resp.Runners = members.Servers, members.Runners
	for i, key := range k.Keys {
		resp.Keys = append(resp.Keys, &pb.GossipKeyCount{Key: key, Primary: key == k.Primary, Servers: holders[i].Servers, Runners: holders[i].Runners})
	}
	return connect.NewResponse(resp), nil
}
