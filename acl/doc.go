// Package acl holds outpost's access control: who a request comes from
// (Identity) and what it may do: policies parsed from HCL (ParsePolicy),
// merged into an Authorizer per token, token secret hashing, argon2id
// passwords and the login throttle.
//
// It holds no state and imports no server code (no fsm, rpc/server, agent
// or runner; see scripts/check-imports.sh), so the CLI can check a policy
// file before sending it. The rpc/server guard uses it to enforce the
// method table.
package acl
