// Package bench measures outpost with real processes on loopback: dispatch
// throughput, pickup latency, failover, scale and memory. It prints a table
// and writes a JSON report with the machine's details so runs can be
// compared. It asserts no timings: the figures are for people.
//
// `make bench` runs the full suite (OUTPOST_BENCH=full); `make test` runs a
// small smoke pass that only checks the harness works.
package bench
