// Package fsm is outpost's Raft state machine: the typed log entries, the
// Apply that hands each to one state-store method, and snapshots that persist
// and restore every table.
//
// It owns no network code and imports neither agent, command nor runner;
// servers call Encode to build entries and read results through State.
package fsm
