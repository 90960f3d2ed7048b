// Package tlsutil owns outpost's TLS: it generates a CA and role
// certificates (`outpost tls ca create`, `outpost tls cert create`),
// loads an agent's certificate files, builds the *tls.Config of every
// listener and dialer so that Reload (SIGHUP) swaps the CA, certificate
// and key for new connections without a restart, and checks the role a
// peer's verified certificate carries (`server.<domain>`,
// `runner.<domain>`, `client.<domain>`).
//
// It is a leaf: it imports no other outpost package, so the CLI, runners
// and servers all use the same rules (scripts/check-imports.sh keeps it
// from reaching agent, command, fsm, rpc/server or runner).
package tlsutil
