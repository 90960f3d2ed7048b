// Package watchdog kills a runner's jobs when the runner cannot.
//
// A runner process that is frozen (SIGSTOP, a hung host) or dead (SIGKILL,
// the OOM killer) cannot kill its jobs, and the servers give a silent
// runner's jobs to another runner once its lease lapses: without help from
// outside the runner process the same job would then run twice at once.
// The watchdog is that help: one small process per runner (the outpost
// binary's hidden `runner-watchdog` command, which runs Main), started by
// Start with a pipe to its stdin, in a session of its own so that a signal
// sent to the runner's process group does not stop it too.
//
// The runner tells it, one line per message (see protocol.go):
//
//   - which job containers exist (executor.Container: the job's cgroups,
//     or its process groups and OUTPOST_JOB_ID), as the executor makes and
//     removes them (*Watchdog implements executor.Watchdog);
//   - the fence deadline: the time by which the runner must have confirmed
//     its leases again, moved later at every confirmation;
//   - an orderly shutdown, after which it exits without killing.
//
// When the deadline passes without being moved, the watchdog kills every
// registered container at once. When its stdin reaches EOF without an
// orderly shutdown (the runner died), it kills everything and exits.
// Deadlines are on CLOCK_BOOTTIME, which keeps counting while the host is
// suspended: a laptop that sleeps past a lease must not wake up with jobs
// that another runner has taken over.
//
// Its stdout is /dev/null and its stderr a pipe the runner reads into its
// own log; the watchdog never blocks on it (a frozen runner reads
// nothing), so a line may be lost, never a kill.
//
// The package imports only the standard library, x/sys/unix, go-hclog and
// runner/executor, whose KillContainer does the killing.
package watchdog
