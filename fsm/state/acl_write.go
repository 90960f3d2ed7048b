package state

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// aclMeta is TableACLMeta's one row.
type aclMeta struct {
	Key   string
	Index uint64
}

const bootstrapKey = "bootstrap"

// BootstrapError is the refusal of a second bootstrap: it carries the
// index an operator writes to acl-bootstrap-reset to allow one more.
type BootstrapError struct{ ResetIndex uint64 }

func (e *BootstrapError) Error() string {
	return fmt.Sprintf("ACL bootstrap already done (reset index: %d): to bootstrap again, write %d to <data_dir>/acl-bootstrap-reset on the leader and retry",
		e.ResetIndex, e.ResetIndex)
}

func (e *BootstrapError) Unwrap() error { return ErrConflict }

// ACLBootstrap stores the first management token, once: a later bootstrap
// must carry the index of the last one (the reset index), which only an
// operator with access to the leader's data directory can hand it.
func (s *Store) ACLBootstrap(index uint64, b *pb.ACLBootstrapEntry) error {
	return s.write(index, func(txn *memdb.Txn) error {
		if raw, _ := txn.First(TableACLMeta, "id", bootstrapKey); raw != nil {
			done := raw.(*aclMeta).Index
			if b.ResetIndex != done {
				return &BootstrapError{ResetIndex: done}
			}
		}
		if err := txn.Insert(TableACLMeta, &aclMeta{Key: bootstrapKey, Index: index}); err != nil {
			return fmt.Errorf("state: acl bootstrap: %w", err)
		}
		return insertToken(txn, index, b.Token)
	}, TableACLMeta, TableACLTokens)
}

// ACLBootstrapIndex is the index of the last bootstrap, 0 before any.
func (s *Store) ACLBootstrapIndex() uint64 {
	raw, _ := s.db.Txn(false).First(TableACLMeta, "id", bootstrapKey)
	if raw == nil {
		return 0
	}
	return raw.(*aclMeta).Index
}

func insertToken(txn *memdb.Txn, index uint64, t *pb.ACLToken) error {
	t = proto.Clone(t).(*pb.ACLToken)
	t.CreateIndex = index
	if raw, _ := txn.First(TableACLTokens, "id", t.AccessorId); raw != nil {
		return fmt.Errorf("acl token %s exists: %w", t.AccessorId, ErrConflict)
	}
	if err := txn.Insert(TableACLTokens, t); err != nil {
		return fmt.Errorf("state: insert acl token: %w", err)
	}
	return nil
}

// UpsertACLPolicy creates or replaces a policy.
func (s *Store) UpsertACLPolicy(index uint64, p *pb.ACLPolicy) error {
	return s.write(index, func(txn *memdb.Txn) error {
		p = proto.Clone(p).(*pb.ACLPolicy)
		p.CreateIndex, p.ModifyIndex = index, index
		if raw, _ := txn.First(TableACLPolicies, "id", p.Name); raw != nil {
			p.CreateIndex = raw.(*pb.ACLPolicy).CreateIndex
		}
		if err := txn.Insert(TableACLPolicies, p); err != nil {
			return fmt.Errorf("state: insert acl policy: %w", err)
		}
		return nil
	}, TableACLPolicies)
}

// DeleteACLPolicy removes a policy; tokens and users naming it lose what
// it gave them.
func (s *Store) DeleteACLPolicy(index uint64, name string) error {
	return s.deleteNamed(index, TableACLPolicies, "acl policy", name)
}

// InsertACLToken stores a new token.
func (s *Store) InsertACLToken(index uint64, t *pb.ACLToken) error {
	return s.write(index, func(txn *memdb.Txn) error { return insertToken(txn, index, t) }, TableACLTokens)
}

// DeleteACLTokens removes tokens by accessor; one that is already gone is
// not an error when several are named (the GC's batch), but is when one is.
func (s *Store) DeleteACLTokens(index uint64, accessors []string) error {
	return s.write(index, func(txn *memdb.Txn) error {
		n := 0
		for _, id := range accessors {
			k, err := txn.DeleteAll(TableACLTokens, "id", id)
			if err != nil {
				return fmt.Errorf("state: delete acl token: %w", err)
			}
			n += k
		}
		if n == 0 && len(accessors) == 1 {
			return fmt.Errorf("acl token %q: %w", accessors[0], ErrNotFound)
		}
		return nil
	}, TableACLTokens)
}

// UpsertACLUser creates or replaces a user.
func (s *Store) UpsertACLUser(index uint64, u *pb.ACLUser) error {
	return s.write(index, func(txn *memdb.Txn) error {
		u = proto.Clone(u).(*pb.ACLUser)
		u.CreateIndex, u.ModifyIndex = index, index
		if raw, _ := txn.First(TableACLUsers, "id", u.Name); raw != nil {
			u.CreateIndex = raw.(*pb.ACLUser).CreateIndex
		}
		if err := txn.Insert(TableACLUsers, u); err != nil {
			return fmt.Errorf("state: insert acl user: %w", err)
		}
		return nil
	}, TableACLUsers)
}

// DeleteACLUser removes a user and every token issued to it at login.
func (s *Store) DeleteACLUser(index uint64, name string) error {
	return s.write(index, func(txn *memdb.Txn) error {
		n, err := txn.DeleteAll(TableACLUsers, "id", name)
		if err != nil {
			return fmt.Errorf("state: delete acl user: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("acl user %q: %w", name, ErrNotFound)
		}
		for _, t := range all[*pb.ACLToken](txn, nil, TableACLTokens, "id") {
			if t.User == name {
				if err := txn.Delete(TableACLTokens, t); err != nil {
					return fmt.Errorf("state: delete token of acl user: %w", err)
				}
			}
		}
		return nil
	}, TableACLUsers, TableACLTokens)
}

// ACLPolicies lists policies by name.
func (s *Store) ACLPolicies() []*pb.ACLPolicy {
	return all[*pb.ACLPolicy](s.db.Txn(false), nil, TableACLPolicies, "id")
}

// ACLPolicy returns one policy.
func (s *Store) ACLPolicy(name string) (*pb.ACLPolicy, error) {
	raw, err := s.db.Txn(false).First(TableACLPolicies, "id", name)
	if err != nil || raw == nil {
		return nil, fmt.Errorf("acl policy %q: %w", name, ErrNotFound)
	}
	return raw.(*pb.ACLPolicy), nil
}

// ACLTokens lists tokens by accessor.
func (s *Store) ACLTokens() []*pb.ACLToken {
	return all[*pb.ACLToken](s.db.Txn(false), nil, TableACLTokens, "id")
}

// ACLToken returns a token by accessor.
func (s *Store) ACLToken(accessor string) (*pb.ACLToken, error) {
	raw, err := s.db.Txn(false).First(TableACLTokens, "id", accessor)
	if err != nil || raw == nil {
		return nil, fmt.Errorf("acl token %q: %w", accessor, ErrNotFound)
	}
	return raw.(*pb.ACLToken), nil
}

// ACLTokenByHash returns the token whose secret hashes to hash.
func (s *Store) ACLTokenByHash(hash []byte) (*pb.ACLToken, error) {
	raw, err := s.db.Txn(false).First(TableACLTokens, "hash", hash)
	if err != nil || raw == nil {
		return nil, fmt.Errorf("acl token: %w", ErrNotFound)
	}
	return raw.(*pb.ACLToken), nil
}

// ExpiredACLTokens lists the accessors of tokens expired at now, at most
// limit, for the leader's GC.
func (s *Store) ExpiredACLTokens(now time.Time, limit int) []string {
	var out []string
	for _, t := range s.ACLTokens() {
		if t.ExpiresAt != nil && !t.ExpiresAt.AsTime().After(now) {
			out = append(out, t.AccessorId)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// ACLUsers lists users by name.
func (s *Store) ACLUsers() []*pb.ACLUser {
	return all[*pb.ACLUser](s.db.Txn(false), nil, TableACLUsers, "id")
}

// ACLUser returns one user.
func (s *Store) ACLUser(name string) (*pb.ACLUser, error) {
	raw, err := s.db.Txn(false).First(TableACLUsers, "id", name)
	if err != nil || raw == nil {
		return nil, fmt.Errorf("acl user %q: %w", name, ErrNotFound)
	}
	return raw.(*pb.ACLUser), nil
}

// aclTokenHashIndex indexes an ACL token by its secret's hash.
type aclTokenHashIndex struct{}

func (aclTokenHashIndex) FromObject(obj any) (bool, []byte, error) {
	t, ok := obj.(*pb.ACLToken)
	if !ok {
		return false, nil, fmt.Errorf("aclTokenHashIndex: %T is not an acl token", obj)
	}
	return len(t.Hash) > 0, append([]byte(nil), t.Hash...), nil
}

func (aclTokenHashIndex) FromArgs(args ...any) ([]byte, error) {
	return tokenHashIndex{}.FromArgs(args...)
}

// ACL rows of a snapshot view.
func (sn *Snapshot) ACLPolicies() []*pb.ACLPolicy {
	return all[*pb.ACLPolicy](sn.txn, nil, TableACLPolicies, "id")
}
func (sn *Snapshot) ACLTokens() []*pb.ACLToken {
	return all[*pb.ACLToken](sn.txn, nil, TableACLTokens, "id")
}
func (sn *Snapshot) ACLUsers() []*pb.ACLUser {
	return all[*pb.ACLUser](sn.txn, nil, TableACLUsers, "id")
}

// ACLBootstrap is the index of the last bootstrap, 0 before any.
func (sn *Snapshot) ACLBootstrap() uint64 {
	raw, _ := sn.txn.First(TableACLMeta, "id", bootstrapKey)
	if raw == nil {
		return 0
	}
	return raw.(*aclMeta).Index
}

func (r *Restore) ACLPolicy(p *pb.ACLPolicy) error { return r.insert(TableACLPolicies, p) }
func (r *Restore) ACLToken(t *pb.ACLToken) error   { return r.insert(TableACLTokens, t) }
func (r *Restore) ACLUser(u *pb.ACLUser) error     { return r.insert(TableACLUsers, u) }
func (r *Restore) ACLBootstrap(b *pb.ACLBootstrapState) error {
	return r.insert(TableACLMeta, &aclMeta{Key: bootstrapKey, Index: b.Index})
}
