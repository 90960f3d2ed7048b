// Package agent assembles outpost's processes: it loads and merges agent
// configuration, runs a server (Raft, FSM, the leader's dispatcher and
// reaper, the HTTP/RPC listener) and/or a runner, and implements the
// Backend of rpc/server that the API handlers call.
//
// It may import rpc, rpc/server, fsm and runner, and it is where the
// server side is wired in (rpc/server.Register); it never reaches command.
// Only command, tests and the test harnesses under internal/ import agent:
// that is how a CLI command reaches server code.
package agent
