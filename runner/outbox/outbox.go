// Package outbox keeps a runner's finished-job reports on disk until a
// server acknowledges them, so a result survives server outages and runner
// restarts. A report is written (and fsynced) before it is first sent.
package outbox

import (
	"encoding/binary"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

var bucket = []byte("finished")

// Outbox stores JobFinished reports keyed by job id and lease.
type Outbox struct {
	db *bolt.DB // nil for an in-memory outbox

	mu  sync.Mutex
	mem map[string][]byte
}

// Open opens (creating if needed) the outbox file at path.
func Open(path string) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 0})
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: init %s: %w", path, err)
	}
	return &Outbox{db: db}, nil
}

// Memory returns an outbox that lives only as long as the process: for the
// dev agent's runner, whose server dies with it anyway.
func Memory() *Outbox { return &Outbox{mem: map[string][]byte{}} }

func key(jobID string, lease uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(jobID+"/"), lease)
}

// Put stores a report durably.
func (o *Outbox) Put(r *pb.JobFinished) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("outbox: encode: %w", err)
	}
	k := key(r.JobId, r.Lease)
	if o.db == nil {
		o.mu.Lock()
		o.mem[string(k)] = b
		o.mu.Unlock()
		return nil
	}
	if err := o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, b) }); err != nil {
		return fmt.Errorf("outbox: put %s: %w", r.JobId, err)
	}
	return nil
}

// Delete forgets a report once a server has acknowledged it.
func (o *Outbox) Delete(jobID string, lease uint64) error {
	k := key(jobID, lease)
	if o.db == nil {
		o.mu.Lock()
		delete(o.mem, string(k))
		o.mu.Unlock()
		return nil
	}
	if err := o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(k) }); err != nil {
		return fmt.Errorf("outbox: delete %s: %w", jobID, err)
	}
	return nil
}

// Has reports whether a result for this attempt waits in the outbox.
func (o *Outbox) Has(jobID string, lease uint64) bool {
	k := key(jobID, lease)
	if o.db == nil {
		o.mu.Lock()
		defer o.mu.Unlock()
		_, ok := o.mem[string(k)]
		return ok
	}
	found := false
	_ = o.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucket).Get(k) != nil
		return nil
	})
	return found
}

// List returns every report not yet acknowledged.
func (o *Outbox) List() ([]*pb.JobFinished, error) {
	var raws [][]byte
	if o.db == nil {
		o.mu.Lock()
		for _, b := range o.mem {
			raws = append(raws, b)
		}
		o.mu.Unlock()
	} else if err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			raws = append(raws, append([]byte(nil), v...))
			return nil
		})
	}); err != nil {
		return nil, fmt.Errorf("outbox: list: %w", err)
	}
	out := make([]*pb.JobFinished, 0, len(raws))
	for _, b := range raws {
		r := &pb.JobFinished{}
		if err := proto.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("outbox: decode: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Close closes the file.
func (o *Outbox) Close() error {
	if o.db == nil {
		return nil
	}
	return o.db.Close()
}
