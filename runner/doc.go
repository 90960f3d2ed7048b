// Package runner is the runner agent: it opens the one outbound stream to a
// server (reconnecting with backoff and jitter to any listed server), runs
// the jobs assigned to it through runner/executor, reports starts, logs and
// results, and keeps results in runner/outbox until a server acknowledges
// them. It enforces each job's log limits before anything leaves it
// (joblog.go): a head and a tail of bounded size, sent at a bounded rate.
//
// Everything it knows of the cluster comes over the stream, so it links no
// server code: it does not reach fsm, agent, command or rpc/server, nor
// Raft, go-memdb or raft-boltdb, directly or through anything it imports
// (rpc is the client package alone). scripts/check-imports.sh checks the
// transitive dependencies of every package under runner/.
package runner
