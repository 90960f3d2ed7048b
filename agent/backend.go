package agent

import (
	"context"
	"fmt"
	"maps"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

var _ rpc.Backend = (*Server)(nil)

// RegisterRunner implements rpc.Backend: it writes the runner's record when
// it is new or its description changed, and nothing otherwise, so
// reconnects cost no log entries.
func (s *Server) RegisterRunner(ctx context.Context, reg *pb.Register, addr string) (*pb.Runner, error) {
	cur, err := s.State().RunnerByID(nil, reg.RunnerId)
	if err == nil && cur.Id == reg.RunnerId && cur.Name == reg.Name && cur.Capacity == reg.Capacity &&
		cur.Version == reg.Version && maps.Equal(cur.Labels, reg.Labels) && cur.Address == addr {
		return cur, nil
	}
	r := &pb.Runner{
		Id:       reg.RunnerId,
		Name:     reg.Name,
		Labels:   reg.Labels,
		Capacity: reg.Capacity,
		Version:  reg.Version,
		Address:  addr,
		State:    "ready",
		LastSeen: timestamppb.Now(),
	}
	if err == nil && cur.Id == reg.RunnerId {
		r.Status, r.State, r.FirstSeen = cur.Status, cur.State, cur.FirstSeen
	} else {
		r.FirstSeen = r.LastSeen
		// Adoption by operators arrives with the runner-token work; until
		// then every runner that reaches a server is adopted.
		r.Status = rpc.RunnerAdopted
	}
	if _, err := s.Apply(ctx, fsm.UpsertRunnerType, &pb.UpsertRunnerEntry{Runner: r}); err != nil {
		return nil, fmt.Errorf("recording runner %s: %w", r.Id, err)
	}
	return s.State().RunnerByID(nil, r.Id)
}

// RunnerConnected implements rpc.Backend.
func (s *Server) RunnerConnected(id string) func() { return s.liveness.Connected(id) }

// RunnerSeen implements rpc.Backend.
func (s *Server) RunnerSeen(id string) { s.liveness.Seen(id) }
