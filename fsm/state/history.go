package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/google/btree"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outpost-run/outpost/rpc"
	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

// finishedJob is a finished job as the history table holds it: the encoded
// message and the fields its indexes and listings read without decoding.
// A decoded pb.Job with its timestamps, maps and the memdb indexes over
// five fields cost about 2.7 KB of heap; this costs well under half, and
// its bytes are nothing the garbage collector has to scan.
type finishedJob struct {
	Id          string
	Project     string
	Status      string
	CreateIndex uint64
	// Created is the job's created_at and Done its done_at (when the
	// servers recorded it finished), in Unix nanoseconds: the time filter
	// of listings and the age of garbage collection read them.
	Created int64
	Done    int64
	// Pinned jobs are never collected: they stay out of history.byDone.
	Pinned bool
	Raw    []byte
	// Logs are the job's log chunks, each encoded and prefixed with its
	// length, in order: they move here from the log table when the job
	// finishes, since a tree entry per chunk cost more than the lines.
	Logs []byte
}

func newFinishedJob(j *pb.Job) (*finishedJob, error) {
	raw, err := proto.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("state: encode finished job %s: %w", j.Id, err)
	}
	return rowOf(j, raw), nil
}

// rowOf is the history row of j, whose encoding is raw.
func rowOf(j *pb.Job, raw []byte) *finishedJob {
	return &finishedJob{Id: j.Id, Project: j.Project, Status: j.Status, CreateIndex: j.CreateIndex,
		Created: unixNanos(j.CreatedAt), Done: unixNanos(doneAt(j, nil)), Pinned: j.Pinned, Raw: raw}
}

// doneAt is when j counts as finished for retention: its done_at, else
// (a job finished before done_at existed, or by an entry without a time)
// the entry's time at, else its own finish, update or creation time.
func doneAt(j *pb.Job, at *timestamppb.Timestamp) *timestamppb.Timestamp {
	for _, t := range []*timestamppb.Timestamp{j.DoneAt, at, j.FinishedAt, j.UpdatedAt, j.CreatedAt} {
		if t != nil {
			return t
		}
	}
	return nil
}

func unixNanos(t *timestamppb.Timestamp) int64 {
	if t == nil {
		return 0
	}
	return t.AsTime().UnixNano()
}

// job decodes the row. Every call returns a fresh message, which callers
// may change.
func (f *finishedJob) job() *pb.Job {
	j := &pb.Job{}
	if err := proto.Unmarshal(f.Raw, j); err != nil {
		// The bytes were produced by proto.Marshal in this process (or a
		// snapshot checked on restore); failing here is a bug.
		panic(fmt.Sprintf("state: finished job %s does not decode: %v", f.Id, err))
	}
	return j
}

// chunks decodes the row's log chunks with seq above afterSeq.
func (f *finishedJob) chunks(afterSeq uint64) []*pb.LogChunk {
	var out []*pb.LogChunk
	for b := f.Logs; len(b) > 0; {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			panic(fmt.Sprintf("state: log chunks of finished job %s are corrupt", f.Id))
		}
		c := &pb.LogChunk{}
		if err := proto.Unmarshal(b[w:w+int(n)], c); err != nil {
			panic(fmt.Sprintf("state: log chunk of finished job %s does not decode: %v", f.Id, err))
		}
		b = b[w+int(n):]
		if c.Seq > afterSeq {
			out = append(out, c)
		}
	}
	return out
}

// setLogs sets the row's logs to prev followed by the encoded chunks, in
// one allocation of the exact size: rows live long, and slack left by
// append would be a third of what logs cost.
func (f *finishedJob) setLogs(prev []byte, chunks [][]byte) {
	n := len(prev)
	for _, c := range chunks {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	b = append(b, prev...)
	for _, c := range chunks {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	f.Logs = bytes.Clone(b) // trims the varint slack
}

// historyRow is the history table's one row: every finished job, in
// ordered trees that are copied on write, and the tombstones of deleted
// jobs. A memdb index cost about 400 bytes per job (a tree node, a leaf and
// a watch channel for each); a B-tree item costs a pointer. A write
// transaction clones the trees once (cheap: nodes are copied only as they
// change) and stores the clones in a new row, so readers see the trees of
// their snapshot, like any other row.
type historyRow struct {
	Key string
	h   *history
	// seq is the write transaction that made this row; until it commits
	// the row is its own and its trees may change in place.
	seq uint64
}

// history is what a historyRow holds. Every finished job is in byID and
// byCreate; byDone holds those garbage collection may take.
type history struct {
	// byID finds a job by id or id prefix.
	byID *btree.BTreeG[*finishedJob]
	// byCreate is the order of listings: by create index, then id.
	byCreate *btree.BTreeG[*finishedJob]
	// byDone is the order of garbage collection, oldest first: by done
	// time, then id. Pinned jobs are left out, so a pass never walks
	// over them and its length is the count the count bound limits.
	byDone *btree.BTreeG[*finishedJob]
	// Tombstones: the ids of deleted jobs, as keys (see tombKeyOf). tombs
	// finds a key; tombBatches holds them as deleted, one batch per
	// DeleteJobs entry by its index, which is the order they are
	// forgotten in (see MaxTombstones); tombCount counts them. A key costs
	// 8 bytes in its batch and about 24 in tombs.
	tombs       *btree.BTreeG[tombKey]
	tombBatches *btree.BTreeG[*tombBatch]
	tombCount   int
}

// tombKey is a deleted job's id as a key, and the index of the batch
// that holds it.
type tombKey struct{ Key, Index uint64 }

// tombBatch is the ids one DeleteJobs entry deleted: its index, its time
// (Unix nanoseconds) and their keys. Never changed once made, so clones
// of the history share it.
type tombBatch struct {
	Index uint64
	At    int64
	Keys  []uint64
}

// tombKeyOf is the key of a job id: the number its hex digits spell for
// the ids servers make ("j-" and 16 hex digits), else a 64-bit FNV-1a
// hash (only hand-made entries and tests use other ids; a collision would
// refuse one submit, at odds of one in 2^64).
func tombKeyOf(id string) uint64 {
	if len(id) == 18 && id[:2] == "j-" {
		if k, err := strconv.ParseUint(id[2:], 16, 64); err == nil {
			return k
		}
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

const historyKey = "history"

// historyDegree sets the trees' fan-out: wide nodes keep them shallow and
// the per-job overhead a pointer, at the price of copying 60-odd pointers
// per node a write touches.
const historyDegree = 32

func newHistory() *history {
	return &history{
		byID: btree.NewG(historyDegree, func(a, b *finishedJob) bool { return a.Id < b.Id }),
		byCreate: btree.NewG(historyDegree, func(a, b *finishedJob) bool {
			if a.CreateIndex != b.CreateIndex {
				return a.CreateIndex < b.CreateIndex
			}
			return a.Id < b.Id
		}),
		byDone: btree.NewG(historyDegree, func(a, b *finishedJob) bool {
			if a.Done != b.Done {
				return a.Done < b.Done
			}
			return a.Id < b.Id
		}),
		tombs:       btree.NewG(historyDegree, func(a, b tombKey) bool { return a.Key < b.Key }),
		tombBatches: btree.NewG(historyDegree, func(a, b *tombBatch) bool { return a.Index < b.Index }),
	}
}

func (h *history) clone() *history {
	return &history{byID: h.byID.Clone(), byCreate: h.byCreate.Clone(), byDone: h.byDone.Clone(),
		tombs: h.tombs.Clone(), tombBatches: h.tombBatches.Clone(), tombCount: h.tombCount}
}

// get returns the finished job with this id, or nil.
func (h *history) get(id string) *finishedJob {
	f, _ := h.byID.Get(&finishedJob{Id: id})
	return f
}

// put stores row, replacing the row of the same id.
func (h *history) put(row *finishedJob) {
	h.remove(row.Id)
	h.byID.ReplaceOrInsert(row)
	h.byCreate.ReplaceOrInsert(row)
	if !row.Pinned {
		h.byDone.ReplaceOrInsert(row)
	}
}

// remove drops the job with this id from every tree; it reports whether
// there was one.
func (h *history) remove(id string) bool {
	old, ok := h.byID.Delete(&finishedJob{Id: id})
	if !ok {
		return false
	}
	h.byCreate.Delete(old)
	h.byDone.Delete(old)
	return true
}

// collected reports whether id is the id of a deleted job still
// remembered.
func (h *history) collected(id string) bool {
	_, ok := h.tombs.Get(tombKey{Key: tombKeyOf(id)})
	return ok
}

// addTombstones records the keys one entry deleted.
func (h *history) addTombstones(b *tombBatch) {
	if len(b.Keys) == 0 {
		return
	}
	if old, ok := h.tombBatches.ReplaceOrInsert(b); ok {
		// Only a restore of a snapshot with the same batch twice does this.
		h.dropBatch(old)
		h.tombBatches.ReplaceOrInsert(b)
	}
	for _, k := range b.Keys {
		h.tombs.ReplaceOrInsert(tombKey{Key: k, Index: b.Index})
	}
	h.tombCount += len(b.Keys)
}

// dropBatch forgets a batch's keys (those a later batch has not taken).
func (h *history) dropBatch(b *tombBatch) {
	for _, k := range b.Keys {
		if t, ok := h.tombs.Get(tombKey{Key: k}); ok && t.Index == b.Index {
			h.tombs.Delete(t)
		}
	}
	h.tombCount -= len(b.Keys)
}

// Tombstones are bounded by count and age, so a cluster that deletes jobs
// at any rate for ever keeps a fixed amount of them: at most
// MaxTombstones (the oldest entries' ids go first, a whole entry's at a
// time), none deleted more than TombstoneTTL before the latest delete.
// They exist for one purpose: a client that retries a submit with the id
// it chose (`job run` does, for 15 seconds) after the job ran and was
// collected is told so instead of running it again. Both bounds cover that
// window many times over: 100,000 ids are 100 seconds of collection at
// 1,000 jobs a second, and about 4 MB. They are constants, not settings,
// because every server must forget the same ids at the same entry.
const (
	MaxTombstones = 100_000
	TombstoneTTL  = 24 * time.Hour
)

// forgetTombstones drops the oldest tombstones beyond the bounds, as of a
// delete at time now (Unix nanoseconds).
func (h *history) forgetTombstones(now int64) {
	for {
		oldest, ok := h.tombBatches.Min()
		if !ok || (h.tombCount <= MaxTombstones && oldest.At >= now-int64(TombstoneTTL)) {
			return
		}
		h.tombBatches.DeleteMin()
		h.dropBatch(oldest)
	}
}

// historyOf returns the finished jobs as of txn, and the channel that
// fires when any of them changes. The history must not be modified.
func historyOf(txn *memdb.Txn) (*history, <-chan struct{}) {
	watch, raw, err := txn.FirstWatch(tableHistory, "id", historyKey)
	if err != nil || raw == nil {
		return newHistory(), watch
	}
	return raw.(*historyRow).h, watch
}

// finishedByID returns one finished job's row, or nil.
func finishedByID(txn *memdb.Txn, id string) (*finishedJob, <-chan struct{}) {
	h, watch := historyOf(txn)
	return h.get(id), watch
}

// writableHistory returns the finished jobs that the write transaction txn
// (the store's current one) may change.
func (s *Store) writableHistory(txn *memdb.Txn) (*history, error) {
	raw, err := txn.First(tableHistory, "id", historyKey)
	if err != nil {
		return nil, fmt.Errorf("state: read history: %w", err)
	}
	var h *history
	if raw != nil {
		row := raw.(*historyRow)
		if row.seq == s.writeSeq {
			return row.h, nil
		}
		h = row.h.clone()
	} else {
		h = newHistory()
	}
	if err := txn.Insert(tableHistory, &historyRow{Key: historyKey, h: h, seq: s.writeSeq}); err != nil {
		return nil, fmt.Errorf("state: write history: %w", err)
	}
	return h, nil
}

// storeJob writes j to the table its status belongs in, removing it from
// the other one: a job moves to the history, with its logs, when it
// finishes and back when it is retried.
func (s *Store) storeJob(txn *memdb.Txn, j *pb.Job) error {
	old, _ := finishedByID(txn, j.Id)
	if rpc.JobTerminal(j.Status) {
		// Written into the encoding, so every server (and a snapshot)
		// keeps the same time for it.
		if t := doneAt(j, nil); t != nil && j.DoneAt == nil {
			j.DoneAt = &timestamppb.Timestamp{Seconds: t.Seconds, Nanos: t.Nanos}
		}
		// The log bookkeeping of an attempt in play is no use to history,
		// except a lost attempt's: its result, and log, may still come.
		if j.Status != rpc.JobLost {
			j.AttemptLog = nil
		}
		if _, err := txn.DeleteAll(TableJobs, "id", j.Id); err != nil {
			return fmt.Errorf("state: move job %s to history: %w", j.Id, err)
		}
		row, err := newFinishedJob(j)
		if err != nil {
			return err
		}
		chunks, err := tableChunks(txn, nil, j.Id, 0)
		if err != nil {
			return err
		}
		var raws [][]byte
		for _, c := range chunks {
			raw, err := proto.Marshal(c)
			if err != nil {
				return fmt.Errorf("state: encode log chunk of %s: %w", j.Id, err)
			}
			raws = append(raws, raw)
			if err := txn.Delete(TableJobLogs, c); err != nil {
				return fmt.Errorf("state: move logs of %s to history: %w", j.Id, err)
			}
		}
		var prev []byte
		if old != nil {
			prev = old.Logs
		}
		row.setLogs(prev, raws)
		h, err := s.writableHistory(txn)
		if err != nil {
			return err
		}
		h.put(row)
		return nil
	}
	j.DoneAt = nil // finished again later, it is done again then
	if old != nil {
		// Retried: its logs so far go back to the log table, where the
		// next attempt's follow them.
		for _, c := range old.chunks(0) {
			if err := txn.Insert(TableJobLogs, c); err != nil {
				return fmt.Errorf("state: move logs of %s out of history: %w", j.Id, err)
			}
		}
		h, err := s.writableHistory(txn)
		if err != nil {
			return err
		}
		h.remove(old.Id)
	}
	if err := txn.Insert(TableJobs, j); err != nil {
		return fmt.Errorf("state: insert job %s: %w", j.Id, err)
	}
	return nil
}

// tableChunks returns the chunks of a job in the log table with seq above
// afterSeq, in order, adding the channel that fires when they change to ws.
func tableChunks(txn *memdb.Txn, ws memdb.WatchSet, jobID string, afterSeq uint64) ([]*pb.LogChunk, error) {
	it, err := txn.LowerBound(TableJobLogs, "id", jobID, afterSeq+1)
	if err != nil {
		return nil, fmt.Errorf("state: read logs of %s: %w", jobID, err)
	}
	ws.Add(it.WatchCh())
	var out []*pb.LogChunk
	for raw := it.Next(); raw != nil; raw = it.Next() {
		c := raw.(*pb.LogChunk)
		if c.JobId != jobID {
			break
		}
		out = append(out, c)
	}
	return out, nil
}

// jobIn returns the stored job with exactly this id from either table, and
// the channel that fires when it changes. A job from the history is
// decoded afresh; one in play is the stored pointer, not to be changed.
func jobIn(txn *memdb.Txn, id string) (<-chan struct{}, *pb.Job, error) {
	watch, raw, err := txn.FirstWatch(TableJobs, "id", id)
	if err != nil {
		return nil, nil, fmt.Errorf("state: job lookup: %w", err)
	}
	if raw != nil {
		return watch, raw.(*pb.Job), nil
	}
	f, watch := finishedByID(txn, id)
	if f != nil {
		return watch, f.job(), nil
	}
	return watch, nil, nil
}
