// Package runner is the runner agent: it opens the one outbound stream to a
// server (reconnecting with backoff and jitter to any listed server), runs
// the jobs assigned to it through runner/executor, reports starts, logs and
// results, and keeps results in runner/outbox until a server acknowledges
// them. It enforces each job's log limits before anything leaves it
// (joblog.go): a head and a tail of bounded size, sent at a bounded rate.
//
// It never imports fsm, agent or command: everything it knows of the
// cluster comes over the stream.
package runner
