package state

import (
	"bytes"
	"encoding/binary"
	"fmt"

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

// addChunk appends one encoded chunk to the row's logs.
func (f *finishedJob) addChunk(raw []byte) {
	f.Logs = binary.AppendUvarint(f.Logs, uint64(len(raw)))
	f.Logs = append(f.Logs, raw...)
}

// storeJob writes j to the table its status belongs in, removing it from
// the other one: a job moves to the history, with its logs, when it
// finishes and back when it is retried.
func storeJob(txn *memdb.Txn, j *pb.Job) error {
	if Terminal(j.Status) {
		if _, err := txn.DeleteAll(TableJobs, "id", j.Id); err != nil {
			return fmt.Errorf("state: move job %s to history: %w", j.Id, err)
		}
		row, err := newFinishedJob(j)
		if err != nil {
			return err
		}
		if old, err := txn.First(tableHistory, "id", j.Id); err == nil && old != nil {
			row.Logs = bytes.Clone(old.(*finishedJob).Logs)
		}
		chunks, err := tableChunks(txn, j.Id)
		if err != nil {
			return err
		}
		for _, c := range chunks {
			raw, err := proto.Marshal(c)
			if err != nil {
				return fmt.Errorf("state: encode log chunk of %s: %w", j.Id, err)
			}
			row.addChunk(raw)
			if err := txn.Delete(TableJobLogs, c); err != nil {
				return fmt.Errorf("state: move logs of %s to history: %w", j.Id, err)
			}
		}
		if err := txn.Insert(tableHistory, row); err != nil {
			return fmt.Errorf("state: insert finished job %s: %w", j.Id, err)
		}
		return nil
	}
	if old, err := txn.First(tableHistory, "id", j.Id); err != nil {
		return fmt.Errorf("state: job lookup: %w", err)
	} else if old != nil {
		// Retried: its logs so far go back to the log table, where the
		// next attempt's follow them.
		for _, c := range old.(*finishedJob).chunks(0) {
			if err := txn.Insert(TableJobLogs, c); err != nil {
				return fmt.Errorf("state: move logs of %s out of history: %w", j.Id, err)
			}
		}
		if err := txn.Delete(tableHistory, old); err != nil {
			return fmt.Errorf("state: move job %s out of history: %w", j.Id, err)
		}
	}
	if err := txn.Insert(TableJobs, j); err != nil {
		return fmt.Errorf("state: insert job %s: %w", j.Id, err)
	}
	return nil
}

// tableChunks returns the chunks of a job in the log table, in order.
func tableChunks(txn *memdb.Txn, jobID string) ([]*pb.LogChunk, error) {
	it, err := txn.LowerBound(TableJobLogs, "id", jobID, uint64(0))
	if err != nil {
		return nil, fmt.Errorf("state: read logs of %s: %w", jobID, err)
	}
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
	watch, raw, err = txn.FirstWatch(tableHistory, "id", id)
	if err != nil {
		return nil, nil, fmt.Errorf("state: job lookup: %w", err)
	}
	if raw != nil {
		return watch, raw.(*finishedJob).job(), nil
	}
	return watch, nil, nil
}
