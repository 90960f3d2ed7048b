package state

import (
	"encoding/binary"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// Table names.
const (
	// TableJobs is the logical jobs table: its index (see Index) moves with
	// every job change. Rows live in two memdb tables: jobs still in play,
	// and tableHistory for finished ones.
	TableJobs     = "jobs"
	TableJobLogs  = "job_logs"
	TableProjects = "projects"
	TableRunners  = "runners"
	TableIndex    = "index"
	TableTokens   = "runner_tokens"
	TableProfiles = "runner_profiles"
	// ACL tables (acl_write.go). TableACLMeta holds one row: the index
	// of the last bootstrap.
	TableACLPolicies = "acl_policies"
	TableACLTokens   = "acl_tokens"
	TableACLUsers    = "acl_users"
	TableACLMeta     = "acl_meta"
	// Runner identity and the gossip keyring (identity_write.go).
	TableRunnerTombstones = "runner_tombstones"
	TableGossipKeyring    = "gossip_keyring"

	tableHistory = "job_history"
)

// tableIndex records the Raft index that last wrote a table, so a blocking
// query can say "state as of index N" and wait for N+1.
type tableIndex struct {
	Key   string
	Value uint64
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableJobs: {
			Name: TableJobs,
			Indexes: map[string]*memdb.IndexSchema{
				// Every index costs a tree insert on every one of a job's four
				// or so writes, on every server. Listing by status or project
				// scans the queue and slot indexes below, which together hold
				// every job in play; finished jobs have their own table.
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				// Only jobs holding a runner slot, so a runner's stream and the
				// dispatcher's load count never scan a runner's history.
				"runner_active": {Name: "runner_active", AllowMissing: true, Indexer: activeRunnerIndex{}},
				// The queue: pending jobs only, in dispatch order (priority,
				// then submission), so the dispatcher reads them in order
				// and stops when runners are full, instead of sorting all.
				"queue": {Name: "queue", Unique: true, AllowMissing: true, Indexer: queueIndex{}},
			},
		},
		// Finished jobs, most of the state on a server with a history. They
		// never change again (unless retried, which moves them back), so
		// they are kept encoded, in one B-tree by id held by this table's
		// single row (see historyRow). Listing a project's history scans
		// the rows without decoding them (tens of ms per 100,000).
		tableHistory: {
			Name: tableHistory,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
		TableJobLogs: {
			Name: TableJobLogs,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "JobId"},
					chunkSeqIndex{},
				}}},
			},
		},
		TableProjects: {
			Name: TableProjects,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		TableRunners: {
			Name: TableRunners,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		TableTokens: {
			Name: TableTokens,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"hash": {Name: "hash", Unique: true, Indexer: tokenHashIndex{}},
			},
		},
		TableProfiles: {
			Name: TableProfiles,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		TableACLPolicies: {
			Name: TableACLPolicies,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		TableACLTokens: {
			Name: TableACLTokens,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "AccessorId"}},
				"hash": {Name: "hash", Unique: true, Indexer: aclTokenHashIndex{}},
			},
		},
		TableACLUsers: {
			Name: TableACLUsers,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		TableACLMeta: {
			Name: TableACLMeta,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
		TableRunnerTombstones: {
			Name: TableRunnerTombstones,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		// One row: the keyring, under the id index of its constant key.
		TableGossipKeyring: {
			Name: TableGossipKeyring,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: keyringIndex{}},
			},
		},
		TableIndex: {
			Name: TableIndex,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}}
}

// chunkSeqIndex indexes a log chunk's sequence number big-endian, so chunks
// iterate in numeric order (memdb's UintFieldIndex uses uvarints, whose byte
// order is not numeric order).
type chunkSeqIndex struct{}

func (chunkSeqIndex) FromObject(obj any) (bool, []byte, error) {
	c, ok := obj.(*pb.LogChunk)
	if !ok {
		return false, nil, fmt.Errorf("chunkSeqIndex: %T is not a log chunk", obj)
	}
	return true, binary.BigEndian.AppendUint64(nil, c.Seq), nil
}

func (chunkSeqIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("chunkSeqIndex: want 1 argument, got %d", len(args))
	}
	seq, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("chunkSeqIndex: argument is %T, want uint64", args[0])
	}
	return binary.BigEndian.AppendUint64(nil, seq), nil
}

// activeRunnerIndex indexes a job by its runner only while the job is active.
type activeRunnerIndex struct{}

func (activeRunnerIndex) FromObject(obj any) (bool, []byte, error) {
	j, ok := obj.(*pb.Job)
	if !ok {
		return false, nil, fmt.Errorf("activeRunnerIndex: %T is not a job", obj)
	}
	if j.RunnerId == "" || !rpc.JobActive(j.Status) {
		return false, nil, nil
	}
	return true, []byte(j.RunnerId + "\x00"), nil
}

// PrefixFromArgs lets the whole index be scanned with an empty prefix.
func (activeRunnerIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) == 1 {
		if id, ok := args[0].(string); ok {
			return []byte(id), nil
		}
	}
	return nil, fmt.Errorf("activeRunnerIndex: want one string prefix")
}

func (activeRunnerIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("activeRunnerIndex: want 1 argument, got %d", len(args))
	}
	id, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("activeRunnerIndex: argument is %T, want string", args[0])
	}
	return []byte(id + "\x00"), nil
}

// tokenHashIndex indexes a runner token by its hash, the only form in which
// a presented token can be looked up.
type tokenHashIndex struct{}

func (tokenHashIndex) FromObject(obj any) (bool, []byte, error) {
	t, ok := obj.(*pb.RunnerToken)
	if !ok {
		return false, nil, fmt.Errorf("tokenHashIndex: %T is not a runner token", obj)
	}
	return len(t.Hash) > 0, append([]byte(nil), t.Hash...), nil
}

func (tokenHashIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("tokenHashIndex: want 1 argument, got %d", len(args))
	}
	h, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("tokenHashIndex: argument is %T, want []byte", args[0])
	}
	return h, nil
}

// queueIndex orders pending jobs by priority (high first), then by the
// index that submitted them (a retry keeps its place), then id.
type queueIndex struct{}

func (queueIndex) FromObject(obj any) (bool, []byte, error) {
	j, ok := obj.(*pb.Job)
	if !ok {
		return false, nil, fmt.Errorf("queueIndex: %T is not a job", obj)
	}
	if j.Status != rpc.JobPending {
		return false, nil, nil
	}
	p := min(max(j.Priority, 0), 255)
	key := []byte{byte(255 - p)}
	key = binary.BigEndian.AppendUint64(key, j.CreateIndex)
	key = append(key, j.Id...)
	return true, append(key, 0), nil
}

func (queueIndex) FromArgs(args ...any) ([]byte, error) {
	return nil, fmt.Errorf("queueIndex: iterate it with the queue_prefix index and an empty prefix")
}

func (queueIndex) PrefixFromArgs(args ...any) ([]byte, error) { return []byte{}, nil }
