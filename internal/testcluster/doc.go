// Package testcluster starts real outpost processes for integration tests
// and benchmarks: the outpost binary built once per test process, servers on
// free loopback ports with their own data directories, and helpers to fault
// them (SIGKILL, SIGTERM, SIGSTOP) and restart them on the same state.
//
// Everything a test starts here is tied to that test: its output goes to a
// log file whose tail is printed when the test fails, and it is killed, with
// every process it started in turn, when the test ends. Nothing is left
// running, even when a test fails half-way or a job escaped its agent.
//
// Waiting is always on a condition (WaitFor, Server.WaitReady), never a fixed
// sleep, so tests stay correct on a slow or loaded machine; deadlines are
// generous because they only bound how long a broken build takes to fail.
//
// A test package that uses the built binary should call Main from TestMain,
// so the binary's temporary directory is removed when the package's tests end.
package testcluster
