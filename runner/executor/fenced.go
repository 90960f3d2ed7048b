package executor

import "time"

// Fenced is a cancellation cause (context.WithCancelCause) for a job whose
// runner has lost its lease: the servers are about to give the job to
// another runner, so the running step gets a shorter grace between SIGTERM
// and SIGKILL than its AbortTimeout, and the job's Reason says why it
// stopped.
//
// Run honours any cause with an AbortTimeout method, and puts any cause
// other than context.Canceled and context.DeadlineExceeded into the
// Canceled result's Reason.
type Fenced struct {
	// Grace is the longest the step gets after SIGTERM; the step's own
	// AbortTimeout applies when it is shorter.
	Grace time.Duration
	// Reason says why, e.g. "lease 42 not confirmed for 30s".
	Reason string
}

func (f Fenced) Error() string {
	if f.Reason == "" {
		return "fenced"
	}
	return f.Reason
}

// AbortTimeout is the grace Run gives the running step.
func (f Fenced) AbortTimeout() time.Duration { return f.Grace }
