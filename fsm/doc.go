// Package fsm is outpost's Raft state machine: the typed log entries, the
// Apply that hands each to one state-store method, and snapshots that persist
// and restore every table.
//
// Every entry type is one row of a table (entries.go). An entry of a type
// this version does not know halts the FSM at that entry, unless its type
// byte carries IgnoreUnknownTypeFlag: an older server must not go on
// applying after a newer leader's entry it cannot apply.
//
// It owns no network code and reaches neither agent, command, runner nor
// rpc/server, not even through another package (scripts/check-imports.sh
// checks the transitive imports); the status words come from the rpc
// client package. Servers call Encode to build entries and read results
// through State.
package fsm
