package rpc

import "time"

// DefaultLeasePeriod is how long servers wait for a silent runner before
// they give its jobs away, when a server does not say (servers send theirs,
// runner_timeout, in Registered).
const DefaultLeasePeriod = 15 * time.Second

// LeaseTimings are the runner protocol's timers, all derived from the
// lease period so that one setting (runner_timeout) keeps them in the
// order the at-most-once rule needs:
//
//	heartbeat < move < stop < deadline < period
//
// A runner heartbeats every Heartbeat. It leaves a server that has not
// confirmed a heartbeat for Move and tries another. When it has had no
// confirmation for Stop it stops its jobs itself (SIGTERM), and by
// Deadline they are killed (SIGKILL), by the runner or, if the runner is
// frozen, by its watchdog: Margin before the earliest moment a server may
// find the runner gone and hand its jobs to another runner.
type LeaseTimings struct {
	Period    time.Duration
	Heartbeat time.Duration
	Move      time.Duration
	Stop      time.Duration
	Deadline  time.Duration
	Margin    time.Duration
}

// Timings derives the protocol's timers from a lease period.
func Timings(period time.Duration) LeaseTimings {
	if period <= 0 {
		period = DefaultLeasePeriod
	}
	t := LeaseTimings{Period: period}
	t.Heartbeat = min(max(period/6, 200*time.Millisecond), 2*time.Second)
	// A margin covers what two hosts' clocks may drift apart in one lease
	// period (far less than 1% on any sane clock) and the time a kill takes
	// to land.
	t.Margin = max(period/10, 500*time.Millisecond)
	t.Deadline = period - t.Margin
	t.Stop = t.Deadline - period/4
	t.Move = min(max(period/3, 2*t.Heartbeat+time.Second), t.Stop-t.Heartbeat)
	return t
}

// HeartbeatInterval is how often a runner reports on its stream under the
// default lease period.
var HeartbeatInterval = Timings(DefaultLeasePeriod).Heartbeat
