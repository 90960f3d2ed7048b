package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// UpsertRunner creates or replaces a runner's record.
func (s *Store) UpsertRunner(index uint64, r *pb.Runner) error {
	return s.write(index, func(txn *memdb.Txn) error {
		r = proto.Clone(r).(*pb.Runner)
		raw, _ := txn.First(TableRunners, "id", r.Id)
		return putRunner(txn, index, r, raw)
	}, TableRunners)
}

// putRunner inserts r at index over cur, the record it replaces (nil for
// a new runner), keeping cur's creation index and first sighting.
func putRunner(txn *memdb.Txn, index uint64, r *pb.Runner, cur any) error {
	if cur != nil {
		old := cur.(*pb.Runner)
		r.CreateIndex = old.CreateIndex
		if r.FirstSeen == nil {
			r.FirstSeen = old.FirstSeen
		}
	} else {
		r.CreateIndex = index
	}
	r.ModifyIndex = index
	if err := txn.Insert(TableRunners, r); err != nil {
		return fmt.Errorf("state: insert runner %s: %w", r.Id, err)
	}
	return nil
}

// Runner actions carried by RunnerUpdateEntry.
const (
	RunnerAdopt   = "adopt"
	RunnerReject  = "reject"
	RunnerForget  = "forget"
	RunnerDrain   = "drain"
	RunnerUndrain = "undrain"
	RunnerReady   = "ready"
	RunnerDown    = "down"
)

// UpdateRunner applies an operator's decision or a liveness verdict.
func (s *Store) UpdateRunner(index uint64, e *pb.RunnerUpdateEntry) error {
	return s.write(index, func(txn *memdb.Txn) error { return updateRunner(txn, index, e) }, TableRunners)
}

func updateRunner(txn *memdb.Txn, index uint64, e *pb.RunnerUpdateEntry) error {
	raw, err := txn.First(TableRunners, "id", e.RunnerId)
	if err != nil {
		return fmt.Errorf("state: runner lookup: %w", err)
	}
	if raw == nil {
		return fmt.Errorf("runner %q: %w", e.RunnerId, ErrNotFound)
	}
	r := proto.Clone(raw.(*pb.Runner)).(*pb.Runner)
	switch e.Action {
	case RunnerAdopt:
		r.Status, r.StatusReason = rpc.RunnerAdopted, reasonOr(e.Reason, "adopted by an operator")
	case RunnerReject:
		r.Status, r.StatusReason = rpc.RunnerRejected, reasonOr(e.Reason, "rejected by an operator")
	case RunnerDrain:
		r.Draining = true
	case RunnerUndrain:
		r.Draining = false
	case RunnerReady:
		r.State, r.LastSeen = rpc.RunnerReady, e.Time
	case RunnerDown:
		r.State = rpc.RunnerDown
		r.StatusReason = reasonOr(e.Reason, r.StatusReason)
	case RunnerForget:
		it, err := txn.Get(TableJobs, "runner_active", r.Id)
		if err != nil {
			return fmt.Errorf("state: runner jobs: %w", err)
		}
		if it.Next() != nil {
			return fmt.Errorf("runner %s still holds jobs; drain it and wait, or reject it so they are requeued, then forget it: %w", r.Id, ErrConflict)
		}
		if err := txn.Delete(TableRunners, raw); err != nil {
			return fmt.Errorf("state: delete runner: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("unknown runner action %q: %w", e.Action, ErrConflict)
	}
	r.ModifyIndex = index
	if err := txn.Insert(TableRunners, r); err != nil {
		return fmt.Errorf("state: update runner: %w", err)
	}
	return nil
}

// UpsertRunnerToken stores an adoption token (its hash).
func (s *Store) UpsertRunnerToken(index uint64, t *pb.RunnerToken) error {
	return s.write(index, func(txn *memdb.Txn) error {
		t = proto.Clone(t).(*pb.RunnerToken)
		t.CreateIndex = index
		if err := txn.Insert(TableTokens, t); err != nil {
			return fmt.Errorf("state: insert runner token: %w", err)
		}
		return nil
	}, TableTokens)
}
