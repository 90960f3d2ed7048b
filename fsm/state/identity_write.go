package state

import (
	"bytes"
	"fmt"
	"slices"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Runner identity (issue 15): adoption by token is decided here, in the
// state machine, so that a token's use count and bindings hold however many
// registrations race for it; a forgotten runner leaves a tombstone so that
// its id cannot be taken over with a new secret and a token.

// RegisterRunnerWithToken records a registration that presents adoption
// token tokenID. The runner is adopted when the token is current (not
// expired at now, uses left) and its bindings hold; the use is counted in
// the same transaction. A tombstoned id is recorded pending whatever the
// token: only an operator's adopt brings a forgotten id back.
func (s *Store) RegisterRunnerWithToken(index uint64, r *pb.Runner, tokenID string, now *timestamppb.Timestamp) error {
	return s.write(index, func(txn *memdb.Txn) error {
		r = proto.Clone(r).(*pb.Runner)
		raw, err := txn.First(TableTokens, "id", tokenID)
		if err != nil {
			return fmt.Errorf("state: token lookup: %w", err)
		}
		if raw == nil {
			return fmt.Errorf("adoption token %s: %w", tokenID, ErrNotFound)
		}
		tok := proto.Clone(raw.(*pb.RunnerToken)).(*pb.RunnerToken)
		if err := TokenAdmits(tok, r.Labels, now); err != nil {
			return err
		}
		tomb, err := txn.First(TableRunnerTombstones, "id", r.Id)
		if err != nil {
			return fmt.Errorf("state: tombstone lookup: %w", err)
		}
		cur, err := txn.First(TableRunners, "id", r.Id)
		if err != nil {
			return fmt.Errorf("state: runner lookup: %w", err)
		}
		if cur != nil && !bytes.Equal(cur.(*pb.Runner).SecretHash, r.SecretHash) {
			return fmt.Errorf("runner %s is registered with a different secret: %w", r.Id, ErrConflict)
		}
		if cur != nil && cur.(*pb.Runner).Status != rpc.RunnerPending {
			return fmt.Errorf("runner %s is %s already: %w", r.Id, cur.(*pb.Runner).Status, ErrConflict)
		}
		if tomb != nil {
			if slices.ContainsFunc(tomb.(*pb.RunnerTombstone).RejectedSecretHashes, func(h []byte) bool { return bytes.Equal(h, r.SecretHash) }) {
				return fmt.Errorf("runner %s: this secret was rejected by an operator: %w", r.Id, ErrConflict)
			}
			r.Status = rpc.RunnerPending
			r.StatusReason = fmt.Sprintf("id %s was forgotten by an operator: a token cannot adopt it again; run `outpost runner adopt %s` if this is the runner you expect", r.Id, r.Id)
		} else {
			r.Status, r.StatusReason = rpc.RunnerAdopted, "adopted with token "+tok.Id
			if len(tok.Projects) > 0 {
				r.Projects = slices.Clone(tok.Projects)
			}
			tok.Used++
			if err := txn.Insert(TableTokens, tok); err != nil {
				return fmt.Errorf("state: update runner token: %w", err)
			}
			if err := setIndex(txn, TableTokens, index); err != nil {
				return err
			}
		}
		return putRunner(txn, index, r, cur)
	}, TableRunners)
}

// TokenAdmits says why tok cannot adopt a runner with labels at now, or
// nil when it can. The servers check it before proposing, for a clear
// early answer; the state machine checks it again, as it decides.
func TokenAdmits(tok *pb.RunnerToken, labels map[string]string, now *timestamppb.Timestamp) error {
	if tok.ExpiresAt != nil && !now.AsTime().Before(tok.ExpiresAt.AsTime()) {
		return fmt.Errorf("adoption token %s expired at %s: %w", tok.Id, tok.ExpiresAt.AsTime().UTC().Format("2006-01-02T15:04:05Z"), ErrConflict)
	}
	if tok.MaxUses > 0 && tok.Used >= tok.MaxUses {
		return fmt.Errorf("adoption token %s is used up (%d of %d uses): %w", tok.Id, tok.Used, tok.MaxUses, ErrConflict)
	}
	for _, k := range sortedKeys(tok.Labels) {
		if got, ok := labels[k]; !ok || got != tok.Labels[k] {
			return fmt.Errorf("adoption token %s is bound to label %s=%s, which the runner does not carry: %w", tok.Id, k, tok.Labels[k], ErrConflict)
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// DeleteRunnerToken revokes an adoption token: runners it adopted stay
// adopted, new ones cannot use it.
func (s *Store) DeleteRunnerToken(index uint64, id string) error {
	return s.deleteNamed(index, TableTokens, "adoption token", id)
}

// ForgetRunner removes a runner that holds no jobs and leaves a tombstone
// for its id, with its secret's hash among the rejected ones if it was
// rejected: the id registers again only as pending, and that secret never.
func (s *Store) ForgetRunner(index uint64, e *pb.ForgetRunnerEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		raw, err := txn.First(TableRunners, "id", e.RunnerId)
		if err != nil {
			return fmt.Errorf("state: runner lookup: %w", err)
		}
		if raw == nil {
			return fmt.Errorf("runner %q: %w", e.RunnerId, ErrNotFound)
		}
		r := raw.(*pb.Runner)
		if err := updateRunner(txn, index, &pb.RunnerUpdateEntry{RunnerId: r.Id, Action: RunnerForget, Time: e.Time}); err != nil {
			return err
		}
		t := &pb.RunnerTombstone{Id: r.Id, CreateIndex: index}
		if old, err := txn.First(TableRunnerTombstones, "id", r.Id); err != nil {
			return fmt.Errorf("state: tombstone lookup: %w", err)
		} else if old != nil {
			t = proto.Clone(old.(*pb.RunnerTombstone)).(*pb.RunnerTombstone)
		}
		t.ForgottenAt, t.ModifyIndex = e.Time, index
		if r.Status == rpc.RunnerRejected && len(r.SecretHash) > 0 &&
			!slices.ContainsFunc(t.RejectedSecretHashes, func(h []byte) bool { return bytes.Equal(h, r.SecretHash) }) {
			t.RejectedSecretHashes = append(t.RejectedSecretHashes, r.SecretHash)
		}
		if err := txn.Insert(TableRunnerTombstones, t); err != nil {
			return fmt.Errorf("state: insert tombstone: %w", err)
		}
		return setIndex(txn, TableRunnerTombstones, index)
	}, TableRunners)
}

// RunnerTombstone returns the tombstone of a forgotten runner id, or nil.
func (s *Store) RunnerTombstone(id string) *pb.RunnerTombstone {
	raw, err := s.db.Txn(false).First(TableRunnerTombstones, "id", id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*pb.RunnerTombstone)
}

// RunnerTokenByID returns an adoption token by id.
func (s *Store) RunnerTokenByID(id string) (*pb.RunnerToken, error) {
	raw, err := s.db.Txn(false).First(TableTokens, "id", id)
	if err != nil {
		return nil, fmt.Errorf("state: token lookup: %w", err)
	}
	if raw == nil {
		return nil, fmt.Errorf("adoption token %q: %w", id, ErrNotFound)
	}
	return raw.(*pb.RunnerToken), nil
}

// Gossip keyring operations carried by GossipKeyringEntry.
const (
	KeyringInit    = "init"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// keyringKey is the keyring's one row's key.
const keyringKey = "gossip"

type keyringIndex struct{}

func (keyringIndex) FromObject(obj any) (bool, []byte, error) {
	if _, ok := obj.(*pb.GossipKeyring); !ok {
		return false, nil, fmt.Errorf("keyringIndex: %T is not a keyring", obj)
	}
	return true, []byte(keyringKey + "\x00"), nil
}

func (keyringIndex) FromArgs(args ...any) ([]byte, error) {
	return []byte(keyringKey + "\x00"), nil
}

func keyringFrom(txn *memdb.Txn, ws memdb.WatchSet) *pb.GossipKeyring {
	watch, raw, err := txn.FirstWatch(TableGossipKeyring, "id", keyringKey)
	ws.Add(watch)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*pb.GossipKeyring)
}

// GossipKeyring returns the cluster's gossip keyring, nil before the
// leader first recorded it; ws, when not nil, fires when it changes.
func (s *Store) GossipKeyring(ws memdb.WatchSet) *pb.GossipKeyring {
	return keyringFrom(s.db.Txn(false), ws)
}

// ApplyGossipKeyring changes the keyring. A key is used only once
// installed (so every member can already read it), and the primary key is
// never removed (no member could read the pool's traffic).
func (s *Store) ApplyGossipKeyring(index uint64, e *pb.GossipKeyringEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		k := &pb.GossipKeyring{}
		if cur := keyringFrom(txn, nil); cur != nil {
			k = proto.Clone(cur).(*pb.GossipKeyring)
		}
		has := slices.Contains(k.Keys, e.Key)
		switch e.Op {
		case KeyringInit:
			if len(k.Keys) > 0 {
				return nil // recorded already: the leader's key came too late
			}
			k.Keys, k.Primary = []string{e.Key}, e.Key
		case KeyringInstall:
			if has {
				return nil
			}
			k.Keys = append(k.Keys, e.Key)
		case KeyringUse:
			if !has {
				return fmt.Errorf("gossip key is not installed; install it first with `outpost operator gossip keyring -install KEY`: %w", ErrConflict)
			}
			k.Primary = e.Key
		case KeyringRemove:
			if !has {
				return fmt.Errorf("gossip key is not in the keyring: %w", ErrNotFound)
			}
			if k.Primary == e.Key {
				return fmt.Errorf("gossip key is the primary key; make another primary with -use first: %w", ErrConflict)
			}
			k.Keys = slices.DeleteFunc(k.Keys, func(x string) bool { return x == e.Key })
		default:
			return fmt.Errorf("unknown gossip keyring operation %q: %w", e.Op, ErrConflict)
		}
		k.ModifyIndex = index
		if err := txn.Insert(TableGossipKeyring, k); err != nil {
			return fmt.Errorf("state: insert keyring: %w", err)
		}
		return nil
	}, TableGossipKeyring)
}
