// Package state is outpost's replicated state store: go-memdb tables for
// jobs, job logs, projects and runners, written only by the FSM (every write
// method takes the Raft index that caused it) and read by everyone else
// through immutable snapshots and watch channels.
//
// Objects handed out by the store are shared with the store's trees: callers
// must treat them as read-only and clone before changing anything.
package state
