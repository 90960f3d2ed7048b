package state

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/google/btree"
	memdb "github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

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
	Raw         []byte
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
	return &finishedJob{Id: j.Id, Project: j.Project, Status: j.Status, CreateIndex: j.CreateIndex, Raw: raw}, nil
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

// historyRow is the history table's one row: every finished job, in an
// ordered tree that is copied on write. A memdb index cost about 400 bytes
// per job (a tree node, a leaf and a watch channel for each); a B-tree
// item costs a pointer. A write transaction clones the tree once (cheap:
// nodes are copied only as they change) and stores the clone in a new row,
// so readers see the tree of their snapshot, like any other row.
type historyRow struct {
	Key  string
	tree *btree.BTreeG[*finishedJob]
	// seq is the write transaction that made this row; until it commits
	// the row is its own and its tree may change in place.
	seq uint64
}

const historyKey = "history"

// historyDegree sets the tree's fan-out: wide nodes keep the tree shallow
// and the per-job overhead a pointer, at the price of copying 60-odd
// pointers per node a write touches.
const historyDegree = 32

func newHistoryTree() *btree.BTreeG[*finishedJob] {
	return btree.NewG(historyDegree, func(a, b *finishedJob) bool { return a.Id < b.Id })
}

// historyOf returns the finished jobs as of txn, and the channel that
// fires when any of them changes. The tree must not be modified.
func historyOf(txn *memdb.Txn) (*btree.BTreeG[*finishedJob], <-chan struct{}) {
	watch, raw, err := txn.FirstWatch(tableHistory, "id", historyKey)
	if err != nil || raw == nil {
		return newHistoryTree(), watch
	}
	return raw.(*historyRow).tree, watch
}

// finishedByID returns one finished job's row, or nil.
func finishedByID(txn *memdb.Txn, id string) (*finishedJob, <-chan struct{}) {
	t, watch := historyOf(txn)
	f, _ := t.Get(&finishedJob{Id: id})
	return f, watch
}

// writableHistory returns a tree of finished jobs that the write
// transaction txn (the store's current one) may change.
func (s *Store) writableHistory(txn *memdb.Txn) (*btree.BTreeG[*finishedJob], error) {
	raw, err := txn.First(tableHistory, "id", historyKey)
	if err != nil {
		return nil, fmt.Errorf("state: read history: %w", err)
	}
	var t *btree.BTreeG[*finishedJob]
	if raw != nil {
		row := raw.(*historyRow)
		if row.seq == s.writeSeq {
			return row.tree, nil
		}
		t = row.tree.Clone()
	} else {
		t = newHistoryTree()
	}
	if err := txn.Insert(tableHistory, &historyRow{Key: historyKey, tree: t, seq: s.writeSeq}); err != nil {
		return nil, fmt.Errorf("state: write history: %w", err)
	}
	return t, nil
}

// storeJob writes j to the table its status belongs in, removing it from
// the other one: a job moves to the history, with its logs, when it
// finishes and back when it is retried.
func (s *Store) storeJob(txn *memdb.Txn, j *pb.Job) error {
	old, _ := finishedByID(txn, j.Id)
	if Terminal(j.Status) {
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
		t, err := s.writableHistory(txn)
		if err != nil {
			return err
		}
		t.ReplaceOrInsert(row)
		return nil
	}
	if old != nil {
		// Retried: its logs so far go back to the log table, where the
		// next attempt's follow them.
		for _, c := range old.chunks(0) {
			if err := txn.Insert(TableJobLogs, c); err != nil {
				return fmt.Errorf("state: move logs of %s out of history: %w", j.Id, err)
			}
		}
		t, err := s.writableHistory(txn)
		if err != nil {
			return err
		}
		t.Delete(old)
	}
	if err := txn.Insert(TableJobs, j); err != nil {
		return fmt.Errorf("state: insert job %s: %w", j.Id, err)
	}
	return nil
}

// deleteFinished removes a finished job and its logs; it reports whether
// there was one.
func (s *Store) deleteFinished(txn *memdb.Txn, id string) (bool, error) {
	if old, _ := finishedByID(txn, id); old == nil {
		return false, nil
	}
	t, err := s.writableHistory(txn)
	if err != nil {
		return false, err
	}
	t.Delete(&finishedJob{Id: id})
	return true, nil
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
