// Package rpc serves and calls outpost's API: the connect-go handlers for
// the job, runner and agent services (proto in proto/, generated code in
// outpostv1/), the mapping of state errors to typed RPC errors, and the
// typed client the CLI and runners use.
//
// Handlers hold no state of their own; everything goes through a Backend,
// which the agent implements. rpc never imports agent or command.
package rpc
