package rpc

// The status words of jobs and runners, as they travel in the wire
// schema's string fields and as the state store keeps them. This is the
// one set: the state store, the servers, the runner and the CLI all use
// these names. They are untyped so that they compare directly with the
// generated messages' string fields.

// Job statuses.
const (
	JobPending   = "pending"
	JobAssigned  = "assigned"
	JobRunning   = "running"
	JobCanceling = "canceling"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobCanceled  = "canceled"
	JobLost      = "lost"
)

// JobTerminal reports whether a job in status s will never change again.
func JobTerminal(s string) bool {
	switch s {
	case JobSucceeded, JobFailed, JobCanceled, JobLost:
		return true
	}
	return false
}

// JobActive reports whether a job in status s holds a runner slot.
func JobActive(s string) bool {
	return s == JobAssigned || s == JobRunning || s == JobCanceling
}

// Runner adoption statuses: whether an operator (or -dev) let the runner
// take work.
const (
	RunnerPending  = "pending"
	RunnerAdopted  = "adopted"
	RunnerRejected = "rejected"
)

// Runner connection states: whether the runner is reachable now.
const (
	RunnerReady = "ready"
	RunnerDown  = "down"
)
