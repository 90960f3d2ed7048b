// Package rpc is outpost's API as clients see it: the wire schema (proto
// in proto/, generated code in outpostv1/), the typed client the CLI,
// runners and servers use to call servers, and what every side of a call
// shares: the job and runner status words (status.go), the lease timings
// derived from the lease period (lease.go), job ids and secrets, and the
// listing helpers that walk pages. The handlers that serve the API are in
// rpc/server.
//
// rpc is linked into every runner and CLI command, so it stays small: it
// does not import fsm, agent, command or rpc/server, nor (through
// anything) Raft or go-memdb; scripts/check-imports.sh checks its
// dependencies transitively.
package rpc
