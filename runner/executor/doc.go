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
// Package executor supports Unix systems; it is developed and tested on Linux.
package executor
