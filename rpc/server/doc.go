// Package server serves outpost's API: the connect-go handlers for the
// job, runner, agent, operator, project and cluster services, the runner
// stream and its report batcher, page tokens, request limits, the strict
// JSON codec, and the one mapping of the state machine's refusals to RPC
// codes and to the names they travel under between servers (errors.go).
//
// Handlers hold no state of their own; everything goes through a Backend,
// which the agent implements and wires in (Register). server may import
// fsm and the rpc client package; it does not reach agent, command or
// runner through anything, and only agent (and tests) import it: command
// reaches it through agent (scripts/check-imports.sh).
package server
