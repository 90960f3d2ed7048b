// Package command holds outpost's CLI: one file per command, built on
// mitchellh/cli. Commands parse flags, call the agent or the API, and format
// output; they hold no business logic of their own.
//
// The client commands talk to servers through the rpc client alone. Server
// code is reached only through agent (`outpost agent`, `runner agent`,
// snapshot inspection, the version string): no file here imports fsm or
// rpc/server (scripts/check-imports.sh).
package command
