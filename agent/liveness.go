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
	// remote holds, per follower, the runners with a stream to it, as last
	// reported; only the leader's copy matters.
	remote map[string]remoteSet
	// localChanged fires when a local stream opens or closes, so a
	// follower reports to the leader at once instead of at the next tick.
	localChanged chan struct{}
}

type remoteSet struct {
	ids map[string]bool
	at  time.Time
}

// remoteFresh is how long a follower's report counts: a few of its
// one-second reports may be lost before its runners stop being usable.
const remoteFresh = 4 * time.Second

type liveEntry struct {
	streams  int
	lastSeen time.Time
}

// NewLiveness returns a tracker that declares a runner gone timeout after it
// was last heard from with no stream open.
func NewLiveness(timeout time.Duration) *Liveness {
	return &Liveness{timeout: timeout, runners: map[string]*liveEntry{}, remote: map[string]remoteSet{}, localChanged: make(chan struct{}, 1)}
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
	l.signalLocal()
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
			l.signalLocal()
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

// Connectable reports whether a runner can take work now: it has a stream
// to this server or, as a follower recently reported, to another.
func (l *Liveness) Connectable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.runners[id]; ok && e.streams > 0 {
		return true
	}
	now := time.Now()
	for _, set := range l.remote {
		if set.ids[id] && now.Sub(set.at) < remoteFresh {
			return true
		}
	}
	return false
}

func (l *Liveness) signalLocal() {
	select {
	case l.localChanged <- struct{}{}:
	default:
	}
}

// Local lists the runners with a stream to this server.
func (l *Liveness) Local() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id, e := range l.runners {
		if e.streams > 0 {
			out = append(out, id)
		}
	}
	return out
}

// Remote records a follower's report of the runners connected to it. A
// change wakes the dispatcher, since runners may have come or gone.
func (l *Liveness) Remote(server string, ids []string) {
	now := time.Now()
	set := remoteSet{ids: make(map[string]bool, len(ids)), at: now}
	l.mu.Lock()
	for _, id := range ids {
		set.ids[id] = true
		l.entry(id).lastSeen = now
	}
	old := l.remote[server]
	changed := len(old.ids) != len(set.ids)
	for id := range set.ids {
		if !old.ids[id] {
			changed = true
		}
	}
	l.remote[server] = set
	hook := l.onOpen
	l.mu.Unlock()
	if changed && hook != nil {
		hook()
	}
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
