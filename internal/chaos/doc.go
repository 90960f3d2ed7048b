// Package chaos is the fault test of issue 12: three servers and four
// runners in two label pools, each in a network namespace of its own, run
// a steady stream of jobs while a seeded nemesis kills, freezes and
// restarts them and cuts the network between them. Afterwards it heals
// everything, waits for the jobs to end and checks, from the servers and
// from markers the jobs write outside outpost, the guarantees of
// ARCHITECTURE.md section 3 (see checks.go for the list).
//
// What it owns: the namespaces and bridge (netns.go), the marker program
// the jobs run (marker.go), the open-loop client (load.go), the fault
// schedule and its execution (nemesis.go), the checks (checks.go) and the
// report (report.go). TestChaos in chaos_test.go puts them together;
// website/chaos.md describes the run for users.
//
// It drives the whole system from outside, through real processes and the
// API, like internal/e2e: it imports rpc, fsm/state (status names) and
// internal/testcluster, never agent or command.
package chaos
