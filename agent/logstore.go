package agent

import (
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// countingLogStore counts the writes reaching the Raft log store: with
// raft-boltdb each StoreLogs call is one transaction and one fsync, so
// calls per job is the disk cost benchmarks report.
type countingLogStore struct {
	raft.LogStore
	calls   atomic.Uint64
	entries atomic.Uint64
}

func (c *countingLogStore) StoreLog(l *raft.Log) error {
	c.calls.Add(1)
	c.entries.Add(1)
	return c.LogStore.StoreLog(l)
}

func (c *countingLogStore) StoreLogs(ls []*raft.Log) error {
	c.calls.Add(1)
	c.entries.Add(uint64(len(ls)))
	return c.LogStore.StoreLogs(ls)
}
