// Package agent assembles outpost's processes: it loads and merges agent
// configuration, runs a server (Raft, FSM, the leader's dispatcher and
// reaper, the HTTP/RPC listener) and/or a runner, and implements the
// Backend of rpc/server that the API handlers call.
//
// It may import rpc, fsm and runner; nothing below it imports agent.
package agent
