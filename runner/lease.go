package runner

import (
	"context"
	"sync"
	"time"

	"github.com/outpost-run/outpost/rpc"
)

// leaseKeeper tracks how long this runner's leases are known to hold.
//
// The servers confirm a heartbeat the runner sent at time s only once the
// leader has heard from the runner no earlier than s and knows it still
// leads (see the servers' leaseConfirmer); no server then hands the
// runner's jobs to another runner before s + lease period. So the runner
// may run jobs until the send time of its latest confirmed heartbeat plus
// the lease period, less a margin, and no longer: past Stop it stops them
// (SIGTERM), and by Deadline they are dead, killed by the runner or, if
// the runner is frozen, by its watchdog. All times are this host's
// monotonic clock; the rule assumes only that two hosts' clocks run at
// about the same rate (within the margin over one lease period), not that
// they agree.
type leaseKeeper struct {
	mu        sync.Mutex
	t         rpc.LeaseTimings
	confirmed time.Time // send time of the latest confirmed heartbeat
	// epoch counts lapses: a start sent in one epoch is good only while
	// the lease has not lapsed since (see valid).
	epoch   uint64
	lapsed  bool
	stop    *time.Timer
	changed chan struct{} // closed and replaced on every change
	// onLapse is called, without the lock, when the lease lapses, with the
	// new epoch: the runner stops what it started in earlier epochs.
	// deadline is told every hard deadline.
	onLapse  func(epoch uint64)
	deadline func(time.Time)
}

func newLeaseKeeper(period time.Duration, onLapse func(uint64), deadline func(time.Time)) *leaseKeeper {
	return &leaseKeeper{t: rpc.Timings(period), lapsed: true, changed: make(chan struct{}), onLapse: onLapse, deadline: deadline}
}

// timings returns the protocol's timers for the current lease period.
func (k *leaseKeeper) timings() rpc.LeaseTimings {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.t
}

// setPeriod takes the lease period a server announced.
func (k *leaseKeeper) setPeriod(period time.Duration) {
	if period <= 0 {
		return
	}
	k.mu.Lock()
	k.t = rpc.Timings(period)
	k.mu.Unlock()
}

// confirm records that the heartbeat sent at sent was confirmed.
func (k *leaseKeeper) confirm(sent time.Time) {
	k.mu.Lock()
	if !sent.After(k.confirmed) {
		k.mu.Unlock()
		return
	}
	now := time.Now()
	// The lease may have run out while nothing ran to notice (a frozen
	// process's timers fire late): that is a lapse all the same, whatever
	// this confirmation says.
	lapsedUnseen := !k.lapsed && now.After(k.confirmed.Add(k.t.Stop))
	epoch := k.epoch
	if lapsedUnseen {
		k.lapsed = true
		k.epoch++
		epoch = k.epoch
		k.notifyLocked()
	}
	stopAt := sent.Add(k.t.Stop)
	if now.After(stopAt) {
		// Confirmed too late to be of use (old answers read after a
		// freeze): the lapse stands.
		k.mu.Unlock()
		if lapsedUnseen && k.onLapse != nil {
			k.onLapse(epoch)
		}
		return
	}
	k.confirmed = sent
	k.lapsed = false
	if k.stop != nil {
		k.stop.Stop()
	}
	k.stop = time.AfterFunc(time.Until(stopAt), k.lapse)
	deadline := sent.Add(k.t.Deadline)
	k.notifyLocked()
	k.mu.Unlock()
	if lapsedUnseen && k.onLapse != nil {
		k.onLapse(epoch)
	}
	if k.deadline != nil {
		k.deadline(deadline)
	}
}

// lapse runs when no confirmation came in time.
func (k *leaseKeeper) lapse() {
	k.mu.Lock()
	if k.lapsed || time.Now().Before(k.confirmed.Add(k.t.Stop)) {
		k.mu.Unlock()
		return
	}
	k.lapsed = true
	k.epoch++
	epoch := k.epoch
	k.notifyLocked()
	k.mu.Unlock()
	if k.onLapse != nil {
		k.onLapse(epoch)
	}
}

func (k *leaseKeeper) notifyLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
}

// valid reports whether the lease holds now, with room to run (before
// Stop), and the epoch it holds in.
func (k *leaseKeeper) valid() (bool, uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ok := !k.lapsed && time.Now().Before(k.confirmed.Add(k.t.Stop))
	return ok, k.epoch
}

// startable is valid with room to spare: heartbeats are confirmed every
// Heartbeat while all is well, so a lease with less than two of them left
// has gone unconfirmed for a while, and a job started on it would likely
// be stopped again at once. Better to wait for the next confirmation.
func (k *leaseKeeper) startableLocked() bool {
	return !k.lapsed && time.Now().Before(k.confirmed.Add(k.t.Stop-2*k.t.Heartbeat))
}

// stillValid reports whether the lease has held without a lapse since
// epoch.
func (k *leaseKeeper) stillValid(epoch uint64) bool {
	ok, now := k.valid()
	return ok && now == epoch
}

// wait blocks until a job may start on the lease (startable), or ctx
// ends, and returns the epoch.
func (k *leaseKeeper) wait(ctx context.Context) (uint64, error) {
	for {
		k.mu.Lock()
		ok := k.startableLocked()
		epoch, ch := k.epoch, k.changed
		k.mu.Unlock()
		if ok {
			return epoch, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// sinceConfirmed is how long ago the latest confirmed heartbeat was sent.
func (k *leaseKeeper) sinceConfirmed() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.confirmed.IsZero() {
		return 0
	}
	return time.Since(k.confirmed)
}

// close stops the lapse timer.
func (k *leaseKeeper) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stop != nil {
		k.stop.Stop()
	}
}
