// Package outbox keeps a runner's finished-job reports on disk until a
// server acknowledges them, so a result survives server outages and runner
// restarts. A report is written (and fsynced) before it is first sent.
//
// Writes are group-committed: one bolt transaction (two fdatasyncs, and
// bolt admits one writer at a time) costs far more than the few bytes of a
// report, and a runner with many jobs finishes many at once. A single
// committer goroutine takes every write queued so far and commits it in one
// transaction; writes that arrive while that transaction syncs wait for the
// next one. The first write after a quiet spell goes at once: there is no
// delay timer (which is why this is not bolt's own DB.Batch, whose first
// caller always waits MaxBatchDelay).
package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/outpost-run/outpost/rpc/outpostv1"
)

var bucket = []byte("finished")

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("outbox: closed")

// Outbox stores JobFinished reports keyed by job id and lease.
type Outbox struct {
	db *bolt.DB // nil for an in-memory outbox

	mu  sync.Mutex
	mem map[string][]byte // the in-memory outbox's contents

	// Group commit state (on-disk outbox only), guarded by mu.
	next   *batch        // writes queued for the next transaction
	kick   chan struct{} // wakes the committer; capacity 1
	done   chan struct{} // closed when the committer has exited
	closed bool
	// deleting holds the keys of deletes that are queued or being
	// committed, each with the sequence number of its latest delete. Delete
	// returns without waiting for the disk (see Delete), so until its
	// transaction is committed the file still holds the report; Has and
	// List consult this set so that they show the report as gone from the
	// moment Delete returns.
	deleting map[string]uint64
	seq      uint64

	commits      atomic.Uint64 // transactions committed, for tests
	beforeCommit func()        // test hook, called before each transaction
}

// op is one queued write: a put when val is non-nil, else a delete.
type op struct {
	key, val []byte
	seq      uint64 // a delete's sequence number in deleting
}

// batch is the writes that share one transaction. errs (one per op, nil
// when all went well) is set before done is closed.
type batch struct {
	ops  []op
	done chan struct{}
	errs []error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

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
	o := &Outbox{
		db:       db,
		next:     newBatch(),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		deleting: map[string]uint64{},
	}
	go o.commitLoop()
	return o, nil
}

// Memory returns an outbox that lives only as long as the process: for the
// dev agent's runner, whose server dies with it anyway.
func Memory() *Outbox { return &Outbox{mem: map[string][]byte{}} }

func key(jobID string, lease uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(jobID+"/"), lease)
}

// Put stores a report durably: when it returns nil, the report is on disk
// and survives a crash of the process. Concurrent Puts share a commit.
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
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	// A Put after a Delete of the same key wins (a batch applies its
	// writes in order), so the key stops being hidden from Has and List;
	// until the commit they show what the file holds, as for any write in
	// flight.
	delete(o.deleting, string(k))
	bt, i := o.next, len(o.next.ops)
	bt.ops = append(bt.ops, op{key: k, val: b})
	o.mu.Unlock()
	o.wake()
	<-bt.done
	if bt.errs != nil && bt.errs[i] != nil {
		return fmt.Errorf("outbox: put %s: %w", r.JobId, bt.errs[i])
	}
	return nil
}

// Delete forgets a report once a server has acknowledged it.
//
// It queues the delete into the next transaction and returns without
// waiting for the disk: a delete lost in a crash only makes the runner send
// the result again, which the server answers as already recorded (or
// stale), and the runner deletes it again. Has and List see the report as
// gone as soon as Delete returns. Close commits queued deletes.
func (o *Outbox) Delete(jobID string, lease uint64) error {
	k := key(jobID, lease)
	if o.db == nil {
		o.mu.Lock()
		delete(o.mem, string(k))
		o.mu.Unlock()
		return nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.seq++
	o.deleting[string(k)] = o.seq
	o.next.ops = append(o.next.ops, op{key: k, seq: o.seq})
	o.mu.Unlock()
	o.wake()
	return nil
}

func (o *Outbox) wake() {
	select {
	case o.kick <- struct{}{}:
	default: // already woken; it will find this write in o.next
	}
}

// commitLoop is the single committer: it commits whatever is queued, one
// transaction at a time, until Close.
func (o *Outbox) commitLoop() {
	defer close(o.done)
	for {
		<-o.kick
		o.mu.Lock()
		var bt *batch // nil: nothing queued (a kick whose write went out already)
		if len(o.next.ops) > 0 {
			bt, o.next = o.next, newBatch()
		}
		closed := o.closed
		o.mu.Unlock()
		if bt != nil {
			o.commit(bt)
		}
		if closed {
			// Close set closed before its kick, and no write is queued
			// after closed is set, so bt held the last of them.
			return
		}
	}
}

// commit writes a batch in one transaction and tells its callers.
func (o *Outbox) commit(bt *batch) {
	if o.beforeCommit != nil {
		o.beforeCommit()
	}
	o.commits.Add(1)
	var errs []error
	if err := o.db.Update(func(tx *bolt.Tx) error { return apply(tx, bt.ops) }); err != nil {
		errs = make([]error, len(bt.ops))
		if len(bt.ops) == 1 {
			errs[0] = err
		} else {
			// One bad write must not fail the others: retry each alone
			// (as bolt's DB.Batch does). Errors are rare (a full disk, a
			// report too large for bolt), so the slow path is fine.
			for i, w := range bt.ops {
				errs[i] = o.db.Update(func(tx *bolt.Tx) error { return apply(tx, []op{w}) })
			}
		}
	}
	o.mu.Lock()
	for _, w := range bt.ops {
		// The delete is on disk now (or failed, and the report shows up
		// again, to be resent and deleted again); stop hiding it unless
		// a later Delete of the same key is still queued.
		if w.val == nil && o.deleting[string(w.key)] == w.seq {
			delete(o.deleting, string(w.key))
		}
	}
	o.mu.Unlock()
	bt.errs = errs
	close(bt.done)
}

func apply(tx *bolt.Tx, ops []op) error {
	bk := tx.Bucket(bucket)
	for _, w := range ops {
		var err error
		if w.val != nil {
			err = bk.Put(w.key, w.val)
		} else {
			err = bk.Delete(w.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Has reports whether a result for this attempt waits in the outbox.
func (o *Outbox) Has(jobID string, lease uint64) bool {
	k := key(jobID, lease)
	o.mu.Lock()
	if o.db == nil {
		_, ok := o.mem[string(k)]
		o.mu.Unlock()
		return ok
	}
	// Checked before reading the file: a delete that leaves this set
	// after the check was committed before it left, so the read sees it.
	_, gone := o.deleting[string(k)]
	o.mu.Unlock()
	if gone {
		return false
	}
	found := false
	_ = o.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucket).Get(k) != nil
		return nil
	})
	return found
}

// Get returns the stored report for this attempt, or nil if there is none.
func (o *Outbox) Get(jobID string, lease uint64) (*pb.JobFinished, error) {
	if !o.Has(jobID, lease) {
		return nil, nil
	}
	k := key(jobID, lease)
	var raw []byte
	if o.db == nil {
		o.mu.Lock()
		raw = o.mem[string(k)]
		o.mu.Unlock()
	} else if err := o.db.View(func(tx *bolt.Tx) error {
		raw = append([]byte(nil), tx.Bucket(bucket).Get(k)...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("outbox: read %s: %w", jobID, err)
	}
	if raw == nil {
		return nil, nil
	}
	r := &pb.JobFinished{}
	if err := proto.Unmarshal(raw, r); err != nil {
		return nil, fmt.Errorf("outbox: decode: %w", err)
	}
	return r, nil
}

// List returns every report not yet acknowledged.
func (o *Outbox) List() ([]*pb.JobFinished, error) {
	var out []*pb.JobFinished
	err := o.each(func(_, v []byte) error {
		r := &pb.JobFinished{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("outbox: decode: %w", err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Keys lists the job and lease of every stored result without decoding
// the results: what a heartbeat reports, every few seconds.
func (o *Outbox) Keys() ([]*pb.RunningJob, error) {
	var out []*pb.RunningJob
	err := o.each(func(k, _ []byte) error {
		if len(k) < 9 || k[len(k)-9] != '/' {
			return fmt.Errorf("outbox: malformed key %q", k)
		}
		out = append(out, &pb.RunningJob{JobId: string(k[:len(k)-9]), Lease: binary.BigEndian.Uint64(k[len(k)-8:])})
		return nil
	})
	return out, err
}

// each calls fn with every stored result's key and encoded value, which
// fn must not keep: the results not being deleted, as in Has.
func (o *Outbox) each(fn func(k, v []byte) error) error {
	o.mu.Lock()
	if o.db == nil {
		defer o.mu.Unlock()
		for k, v := range o.mem {
			if err := fn([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	}
	// As in Has: the set is copied before the file is read.
	var gone map[string]struct{}
	if len(o.deleting) > 0 {
		gone = make(map[string]struct{}, len(o.deleting))
		for k := range o.deleting {
			gone[k] = struct{}{}
		}
	}
	o.mu.Unlock()
	if err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if _, ok := gone[string(k)]; ok {
				return nil
			}
			return fn(k, v)
		})
	}); err != nil {
		return fmt.Errorf("outbox: list: %w", err)
	}
	return nil
}

// Close commits every queued write and closes the file. Writes after Close
// return ErrClosed.
func (o *Outbox) Close() error {
	if o.db == nil {
		return nil
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	o.mu.Unlock()
	o.wake()
	<-o.done
	return o.db.Close()
}
