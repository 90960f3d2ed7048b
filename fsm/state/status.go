package state

import "github.com/outpost-run/outpost/rpc"

// Deprecated aliases of the status words in rpc/status.go, kept only so
// that callers outside fsm not yet moved to rpc.* still build; fsm itself
// uses rpc's. The whole file goes once no caller is left. (No formal
// "Deprecated:" notes: staticcheck would then fail every branch still
// using them, and the compiler finds them all once the file is gone.)

// Job statuses: use rpc.JobPending and the rest.
const (
	StatusPending   = rpc.JobPending
	StatusAssigned  = rpc.JobAssigned
	StatusRunning   = rpc.JobRunning
	StatusCanceling = rpc.JobCanceling
	StatusSucceeded = rpc.JobSucceeded
	StatusFailed    = rpc.JobFailed
	StatusCanceled  = rpc.JobCanceled
	StatusLost      = rpc.JobLost
)

// Terminal is rpc.JobTerminal; use that.
func Terminal(s string) bool { return rpc.JobTerminal(s) }

// Active is rpc.JobActive; use that.
func Active(s string) bool { return rpc.JobActive(s) }
