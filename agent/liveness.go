package agent

import (
	"sync"
	"time"
)

// Liveness tracks, in memory, which runners have an open stream and when
// each was last heard from. It is never written to the log: heartbeats are
// chatter, and a new leader starts every runner with a fresh grace period.
type Liveness struct {
	timeout time.Duration

	mu      sync.Mutex
	runners map[string]*liveEntry
	onOpen  func()
}

type liveEntry struct {
	streams  int
	lastSeen time.Time
}

// NewLiveness returns a tracker that declares a runner gone timeout after it
// was last heard from with no stream open.
func NewLiveness(timeout time.Duration) *Liveness {
	return &Liveness{timeout: timeout, runners: map[string]*liveEntry{}}
}

func (l *Liveness) entry(id string) *liveEntry {
	e, ok := l.runners[id]
	if !ok {
		e = &liveEntry{}
		l.runners[id] = e
	}
	return e
}

// Connected records an open stream; the returned func records its close.
func (l *Liveness) Connected(id string) func() {
	l.mu.Lock()
	e := l.entry(id)
	e.streams++
	e.lastSeen = time.Now()
	hook := l.onOpen
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			e.streams--
			e.lastSeen = time.Now()
			l.mu.Unlock()
			if hook != nil {
				hook()
			}
		})
	}
}

// Seen refreshes a runner's last-heard time.
func (l *Liveness) Seen(id string) {
	l.mu.Lock()
	l.entry(id).lastSeen = time.Now()
	l.mu.Unlock()
}

// Connectable reports whether a runner can take work now: it has a stream.
func (l *Liveness) Connectable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.runners[id]
	return ok && e.streams > 0
}

// Gone reports whether a runner has had no stream and no word for the
// timeout, counting from since at the earliest (leadership start).
func (l *Liveness) Gone(id string, since time.Time, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	last := since
	if e, ok := l.runners[id]; ok {
		if e.streams > 0 {
			return false
		}
		if e.lastSeen.After(last) {
			last = e.lastSeen
		}
	}
	return now.Sub(last) > l.timeout
}

// onOpenSet installs a hook called whenever a stream opens or closes (the
// leader uses it to wake the dispatcher).
func (l *Liveness) onOpenSet(f func()) {
	l.mu.Lock()
	l.onOpen = f
	l.mu.Unlock()
}
