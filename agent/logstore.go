package agent

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The Raft log on disk (raft-boltdb) grows to its high-water mark and does
// not shrink: bolt reuses freed pages but never gives them back. So the
// Raft directory is bounded by the most the log ever holds, which is what
// it keeps behind a snapshot (trailing entries) plus what is appended
// until the next one, times the size of the entries. Raft counts both in
// entries (SnapshotThreshold, TrailingLogs) and looks only every
// SnapshotInterval, which bounds nothing in bytes: 10,240 trailing entries
// of 2 MB log reports were 20 GB, and a job printing fast appended
// hundreds of MB between two checks. countingLogStore knows the size of
// every entry in the log, and the server snapshots by bytes as well
// (snapshotByBytes): once raft_snapshot_bytes were appended since the
// last snapshot, it snapshots at once, keeping behind it only as many
// entries as fit in raft_trailing_bytes. The log then holds at most about
// raft_trailing_bytes + raft_snapshot_bytes, plus what is appended while a
// snapshot is taken. Entries themselves stay
// small (report batches of at most 256 KiB, rpc/server/report_batch.go), so the
// log's bytes are what its settings say.

// entryOverhead is what raft-boltdb stores of an entry besides its data:
// its index, term, type and append time, msgpack-encoded, and the key.
const entryOverhead = 64

// minTrailingLogs keeps a few entries behind a snapshot however large
// they are (four report batches are 1 MiB), so a follower that is a
// moment behind still catches up from the log.
const minTrailingLogs = 4

// countingLogStore counts the writes reaching the Raft log store: with
// raft-boltdb each StoreLogs call is one transaction and one fsync, so
// calls per job is the disk cost benchmarks report. It also keeps the
// size of every entry in the log, oldest first, to bound the log in bytes.
type countingLogStore struct {
	raft.LogStore
	calls   atomic.Uint64
	entries atomic.Uint64

	mu sync.Mutex
	// sizes of the entries in the log, first at index first.
	first uint64
	sizes []uint32
	bytes uint64
	// since is the bytes appended since the log was last compacted (or
	// snapshotted); full, if set, is told (without blocking) when they
	// pass fullAt.
	since  uint64
	full   chan<- struct{}
	fullAt uint64
}

func entrySize(l *raft.Log) uint32 {
	return uint32(len(l.Data) + len(l.Extensions) + entryOverhead)
}

// load learns the sizes of the entries already in the store (a restart).
func (c *countingLogStore) load() error {
	first, err := c.LogStore.FirstIndex()
	if err != nil {
		return err
	}
	last, err := c.LogStore.LastIndex()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.first, c.sizes, c.bytes = first, nil, 0
	if last == 0 {
		return nil
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := c.LogStore.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				continue
			}
			return fmt.Errorf("reading raft log entry %d: %w", i, err)
		}
		c.sizes = append(c.sizes, entrySize(&l))
		c.bytes += uint64(entrySize(&l))
	}
	return nil
}

func (c *countingLogStore) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

func (c *countingLogStore) StoreLogs(ls []*raft.Log) error {
	c.calls.Add(1)
	c.entries.Add(uint64(len(ls)))
	if err := c.LogStore.StoreLogs(ls); err != nil {
		return err
	}
	c.mu.Lock()
	for _, l := range ls {
		if len(c.sizes) == 0 || l.Index != c.first+uint64(len(c.sizes)) {
			// Not right after the last (the first entry, or after a
			// snapshot install emptied the log): start from it.
			c.first, c.sizes, c.bytes = l.Index, c.sizes[:0], 0
		}
		c.sizes = append(c.sizes, entrySize(l))
		c.bytes += uint64(entrySize(l))
		c.since += uint64(entrySize(l))
	}
	full := c.full != nil && c.since > c.fullAt
	c.mu.Unlock()
	if full {
		select {
		case c.full <- struct{}{}:
		default:
		}
	}
	return nil
}

// DeleteRange forgets the sizes of deleted entries: the oldest after a
// snapshot, or the newest when a follower drops entries that conflict
// with its leader's.
func (c *countingLogStore) DeleteRange(min, max uint64) error {
	if err := c.LogStore.DeleteRange(min, max); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sizes) > 0 && c.first >= min && c.first <= max {
		c.since = 0 // compacted after a snapshot
	}
	for len(c.sizes) > 0 && c.first >= min && c.first <= max {
		c.bytes -= uint64(c.sizes[0])
		c.sizes = c.sizes[1:]
		c.first++
	}
	for n := len(c.sizes); n > 0; n = len(c.sizes) {
		last := c.first + uint64(n) - 1
		if last < min || last > max {
			break
		}
		c.bytes -= uint64(c.sizes[n-1])
		c.sizes = c.sizes[:n-1]
	}
	if len(c.sizes) == 0 {
		c.sizes = nil // let a long log's array go
	}
	return nil
}

// logBytes is what the entries in the log take, about, on disk.
func (c *countingLogStore) logBytes() (uint64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, len(c.sizes)
}

// appended is the bytes appended since the last snapshot.
func (c *countingLogStore) appended() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.since
}

// snapshotted notes a snapshot, which may have compacted nothing (the
// trailing entries held all): what was appended before it needs no other.
func (c *countingLogStore) snapshotted() {
	c.mu.Lock()
	c.since = 0
	c.mu.Unlock()
}

// trailingFor is how many entries to keep behind a snapshot so that they
// take at most budget bytes: as many as fit of the largest entry in the
// log, at most most and at least minTrailingLogs. The largest, not the
// newest: raft counts the entries to keep when it compacts, later than
// this is worked out, and the entries appended meanwhile may be large
// (log reports) even when the newest were small (submits).
func (c *countingLogStore) trailingFor(budget uint64, most uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	largest := uint32(entryOverhead)
	for _, n := range c.sizes {
		largest = max(largest, n)
	}
	return min(most, max(minTrailingLogs, budget/uint64(largest)))
}

// snapshotByBytes snapshots whenever the bytes appended since the last
// snapshot pass raft_snapshot_bytes, and keeps raft's trailing entries to
// what fits in raft_trailing_bytes, also for raft's own snapshots (by
// entries, every SnapshotInterval). It runs until shutdown.
func (s *Server) snapshotByBytes(full <-chan struct{}) {
	defer s.wg.Done()
	logger := s.logger.Named("snapshot")
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-full:
		case <-tick.C:
		}
		s.boundTrailingLogs(logger)
		if s.logCount.appended() <= s.cfg.RaftSnapshotBytes {
			continue
		}
		bytes, n := s.logCount.logBytes()
		start := time.Now()
		err := s.raft.Snapshot().Error()
		switch {
		case errors.Is(err, raft.ErrNothingNewToSnapshot):
		case err != nil:
			logger.Warn("snapshot to bound the raft log failed", "log_bytes", bytes, "error", err)
			// Not at once again: the cause (a snapshot in progress, a
			// full disk) takes a while to pass.
			select {
			case <-s.shutdownCh:
				return
			case <-time.After(time.Second):
			}
		default:
			s.logCount.snapshotted()
			after, m := s.logCount.logBytes()
			logger.Debug("snapshot to bound the raft log", "took", time.Since(start).Round(time.Millisecond),
				"log_bytes_before", bytes, "entries_before", n, "log_bytes_after", after, "entries_after", m)
		}
	}
}

// boundTrailingLogs sets raft's trailing entries to what fits in the
// trailing bytes, within raft_trailing_logs.
func (s *Server) boundTrailingLogs(logger hclog.Logger) {
	want := s.logCount.trailingFor(s.cfg.RaftTrailingBytes, s.cfg.TrailingLogs)
	rc := s.raft.ReloadableConfig()
	if rc.TrailingLogs == want {
		return
	}
	rc.TrailingLogs = want
	if err := s.raft.ReloadConfig(rc); err != nil {
		logger.Warn("bounding the raft log's trailing entries", "trailing_logs", want, "error", err)
	}
}

// boundedLogCache keeps the newest entries in memory, for followers that
// lag a little, at most maxEntries and maxBytes of them: raft's own
// LogCache counts entries only, and 512 entries of 2 MB were a GB.
type boundedLogCache struct {
	raft.LogStore
	maxEntries int
	maxBytes   int

	mu     sync.Mutex
	byIdx  map[uint64]*raft.Log
	order  []uint64 // indexes, oldest first
	cached int
}

func newBoundedLogCache(store raft.LogStore, maxEntries, maxBytes int) *boundedLogCache {
	return &boundedLogCache{LogStore: store, maxEntries: maxEntries, maxBytes: maxBytes, byIdx: map[uint64]*raft.Log{}}
}

func (c *boundedLogCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.Lock()
	if l, ok := c.byIdx[idx]; ok {
		*log = *l
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.LogStore.GetLog(idx, log)
}

func (c *boundedLogCache) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

func (c *boundedLogCache) StoreLogs(ls []*raft.Log) error {
	if err := c.LogStore.StoreLogs(ls); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range ls {
		if old, ok := c.byIdx[l.Index]; ok {
			c.cached -= int(entrySize(old))
		} else {
			c.order = append(c.order, l.Index)
		}
		c.byIdx[l.Index] = l
		c.cached += int(entrySize(l))
	}
	for len(c.order) > 0 && (len(c.order) > c.maxEntries || c.cached > c.maxBytes) {
		if old, ok := c.byIdx[c.order[0]]; ok {
			c.cached -= int(entrySize(old))
			delete(c.byIdx, c.order[0])
		}
		c.order = c.order[1:]
	}
	return nil
}

func (c *boundedLogCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	c.byIdx, c.order, c.cached = map[uint64]*raft.Log{}, nil, 0
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}
