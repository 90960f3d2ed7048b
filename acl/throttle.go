package acl

import (
	"sync"
	"time"
)

// Throttle limits failed logins per key (a user name, a source address):
// after Max failures within Window, the key is refused for Base, doubled
// at each further lockout up to MaxBlock. It lives in the memory of the
// server that handles the logins.
type Throttle struct {
	Max      int
	Window   time.Duration
	Base     time.Duration
	MaxBlock time.Duration
	// Now is the clock; tests set it.
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]*throttled
}

type throttled struct {
	failures     []time.Time
	blockedUntil time.Time
	lockouts     int
	last         time.Time
}

// maxThrottleKeys bounds the memory a flood of source addresses takes.
const maxThrottleKeys = 10000

// NewThrottle returns a login throttle: max failures a minute, then 30s,
// doubling up to an hour.
func NewThrottle(max int) *Throttle {
	return &Throttle{Max: max, Window: time.Minute, Base: 30 * time.Second, MaxBlock: time.Hour, Now: time.Now}
}

// Login limits: per user, and per source address, which many users may
// share behind a NAT, so it allows more.
const (
	MaxUserFailures = 5
	MaxAddrFailures = 20
)

// Check returns how long key must still wait, 0 when it may try.
func (t *Throttle) Check(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.keys[key]
	if k == nil {
		return 0
	}
	if wait := k.blockedUntil.Sub(t.Now()); wait > 0 {
		return wait
	}
	return 0
}

// Fail records a failed attempt by key.
func (t *Throttle) Fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.Now()
	if t.keys == nil {
		t.keys = map[string]*throttled{}
	}
	k := t.keys[key]
	if k == nil {
		if len(t.keys) >= maxThrottleKeys {
			t.prune(now)
		}
		k = &throttled{}
		t.keys[key] = k
	}
	k.last = now
	kept := k.failures[:0]
	for _, f := range k.failures {
		if now.Sub(f) < t.Window {
			kept = append(kept, f)
		}
	}
	k.failures = append(kept, now)
	if len(k.failures) >= t.Max {
		block := t.Base << min(k.lockouts, 20)
		if block > t.MaxBlock || block <= 0 {
			block = t.MaxBlock
		}
		k.lockouts++
		k.blockedUntil = now.Add(block)
		k.failures = nil
	}
}

// Reset forgets key's failures: a successful login.
func (t *Throttle) Reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}

// prune drops keys that are neither blocked nor failed recently; if all
// are, the oldest half goes (a flood must not grow memory).
func (t *Throttle) prune(now time.Time) {
	for key, k := range t.keys {
		if now.After(k.blockedUntil) && now.Sub(k.last) > t.Window {
			delete(t.keys, key)
		}
	}
	for key := range t.keys {
		if len(t.keys) < maxThrottleKeys/2 {
			break
		}
		delete(t.keys, key)
	}
}
