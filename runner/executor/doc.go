// Package executor runs one job's steps as local processes and streams their
// output. It is the part of a runner (and of `outpost job run -local`) that
// touches the operating system: it owns building each step's environment,
// resolving its program, starting it in its own process group, reading its
// stdout and stderr line by line, enforcing step and job timeouts, and
// stopping it on cancellation. It knows nothing about servers, leases or
// retries; callers turn its Result into whatever they report.
//
// # Drivers
//
// A Spec's Driver says how steps become processes:
//
//   - "" (auto): a step with Command is exec'd directly, a step with Script
//     runs as /bin/sh -c SCRIPT.
//   - "exec": Command steps only; a Script step makes the job invalid, so a
//     runner profile can forbid shell scripts outright.
//   - "shell": Script steps run under /bin/sh; Command steps are exec'd as in
//     auto mode (an argv needs no shell).
//   - "noop": nothing is started; each step logs one system line and succeeds.
//
// The whole job is validated before the first step starts, so a malformed
// step late in the list cannot leave a job half run.
//
// # Stopping processes
//
// Every step is the leader of a new process group, and every signal goes to
// the group, so shells, pipelines and background children are stopped
// together. On cancellation or timeout the group gets SIGTERM; when the
// leader exits, or AbortTimeout (default 30s) passes, the group gets
// SIGKILL. On Linux the leader is not reaped until signalling is over: its
// zombie keeps the group id from being reused, so a late signal can never hit
// an unrelated process group.
//
// When a step exits normally, processes it left running in the background are
// not killed (a step may start a service for the steps after it). If such a
// process still holds the step's stdout or stderr, Run stops reading those
// pipes a short while after the step exited rather than waiting for it.
//
// # Job containment
//
// With a Spec.Host, nothing a job starts outlives it. A Host is probed once
// per runner (NewHost) and picks, in this order:
//
//   - cgroup v2 (a pure v2 host, or the unified hierarchy of a hybrid one):
//     each job gets a cgroup under the runner's parent cgroup
//     outpost-<name>; steps start straight into it (clone3 with
//     CLONE_INTO_CGROUP) and the job ends with cgroup.kill. On a hybrid
//     host the v1 memory and cpu controllers serve alongside for limits
//     and peak memory.
//   - cgroup v1: cgroups in the memory, cpu, cpuacct, pids and freezer
//     hierarchies; a runner thread moves itself into them to fork each
//     step (v1 membership is per thread, and a child starts where its
//     forking thread is), and the job ends with freeze, SIGKILL, thaw.
//   - no cgroups: the runner becomes a child subreaper and the job ends
//     with a sweep of /proc for its process groups and the processes that
//     re-parented to the runner carrying its OUTPOST_JOB_ID.
//
// The container is killed as soon as the step that ends the job (the last,
// or the first that fails or is stopped) has exited, before its output is
// drained, and removed when Run returns; Result reports the processes it
// killed, the job's peak memory and its CPU time. The same cgroups carry
// Limits.MemoryBytes and Limits.CPUs. A Watchdog, if the Host has one, is
// told of every container, so that a process outside the runner can kill
// the jobs of a runner that froze or died (package runner/watchdog). The
// next NewHost with the same name kills and removes the job cgroups a dead
// runner left behind.
//
// Package executor supports Unix systems; it is developed and tested on Linux.
// Job containment needs Linux.
package executor
