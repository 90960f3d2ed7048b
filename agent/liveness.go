package agent

import (
	"context"
	"sync"
	"time"
)

// Liveness tracks, in memory, which runners are alive: streams open to this
// server and when each runner last spoke, followers' reports of runners
// streaming to them, and what gossip says. It is never written to the log:
// heartbeats are chatter, and a new leader starts every runner with a fresh
// grace period.
//
// A runner is usable (can take work) while its stream has spoken within the
// timeout. It is gone (its jobs are handed back) when it has not spoken for
// the timeout and gossip does not vouch for it; gossip alone keeps it for at
// most gossipGrace more, so a runner cut off from every server's API cannot
// hold its jobs forever.
type Liveness struct {
	timeout time.Duration

	mu      sync.Mutex
	runners map[string]*liveEntry
	onOpen  func()
	// remote holds, per follower, the runners with a live stream to it.
	remote map[string]remoteSet
	// localChanged fires when a local stream opens or closes, so a
	// follower reports to the leader at once instead of at the next tick.
	localChanged chan struct{}
	// reaping holds the runners the leader has found gone and whose jobs
	// it is handing back; each channel closes when that entry is in the
	// log. No lease of such a runner is confirmed meanwhile (awaitReaps),
	// or a start confirmed in between could commit before the hand-back.
	reaping map[string]chan struct{}
}

type liveEntry struct {
	streams     int
	lastSeen    time.Time
	gossipAlive bool
}

type remoteSet struct {
	ids map[string]bool
	at  time.Time
}

// remoteFresh is how long a follower's report counts: a few of its
// one-second reports may be lost before its runners stop being usable.
const remoteFresh = 4 * time.Second

// gossipGrace multiplies the timeout for runners that gossip says are alive
// but that have no stream.
const gossipGrace = 3

// NewLiveness returns a tracker with the given silence timeout.
func NewLiveness(timeout time.Duration) *Liveness {
	return &Liveness{
		timeout:      timeout,
		runners:      map[string]*liveEntry{},
		remote:       map[string]remoteSet{},
		localChanged: make(chan struct{}, 1),
		reaping:      map[string]chan struct{}{},
	}
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
			l.mu.Unlock()
			l.signalLocal()
			if hook != nil {
				hook()
			}
		})
	}
}

// Seen records that a runner spoke on its stream.
func (l *Liveness) Seen(id string) {
	l.mu.Lock()
	l.entry(id).lastSeen = time.Now()
	l.mu.Unlock()
}

// LastSeen returns when a runner last spoke, as far as this server knows.
func (l *Liveness) LastSeen(id string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.runners[id]
	if !ok || e.lastSeen.IsZero() {
		return time.Time{}, false
	}
	return e.lastSeen, true
}

// Fresh reports whether a runner spoke within the timeout.
func (l *Liveness) Fresh(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.runners[id]
	return ok && time.Since(e.lastSeen) <= l.timeout
}

// Gossip records what the gossip pool says of a runner.
func (l *Liveness) Gossip(id string, alive bool) {
	l.mu.Lock()
	l.entry(id).gossipAlive = alive
	l.mu.Unlock()
}

// Usable reports whether a runner can take work now: a live stream to this
// server or, as a follower recently reported, to another.
func (l *Liveness) Usable(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if e, ok := l.runners[id]; ok && e.streams > 0 && now.Sub(e.lastSeen) <= l.timeout {
		return true
	}
	for _, set := range l.remote {
		if set.ids[id] && now.Sub(set.at) < remoteFresh {
			return true
		}
	}
	return false
}

// Gone reports whether a runner should be given up on, counting silence
// from since at the earliest (when this server started leading).
func (l *Liveness) Gone(id string, since, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.gone(id, since, now)
}

// BeginReap checks again that a runner is gone and, if so, marks it as
// being reaped until EndReap: the decision and the hand-back it leads to
// then come before any lease confirmation made after the decision.
func (l *Liveness) BeginReap(id string, since, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.reaping[id]; busy || !l.gone(id, since, now) {
		return false
	}
	l.reaping[id] = make(chan struct{})
	return true
}

// EndReap says the hand-back of a runner's jobs is in the log, or failed.
func (l *Liveness) EndReap(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.reaping[id]; ok {
		close(ch)
		delete(l.reaping, id)
	}
}

// awaitReaps waits until none of the runners is being reaped.
func (l *Liveness) awaitReaps(ctx context.Context, ids []string) error {
	for {
		var wait chan struct{}
		l.mu.Lock()
		for _, id := range ids {
			if ch, ok := l.reaping[id]; ok {
				wait = ch
				break
			}
		}
		l.mu.Unlock()
		if wait == nil {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (l *Liveness) gone(id string, since, now time.Time) bool {
	last, gossip := since, false
	if e, ok := l.runners[id]; ok {
		if e.lastSeen.After(last) {
			last = e.lastSeen
		}
		gossip = e.gossipAlive
	}
	silent := now.Sub(last)
	if gossip {
		return silent > gossipGrace*l.timeout
	}
	return silent > l.timeout
}

func (l *Liveness) signalLocal() {
	select {
	case l.localChanged <- struct{}{}:
	default:
	}
}

// Local lists the runners with a live stream to this server, and how many
// milliseconds ago each last spoke.
func (l *Liveness) Local() (ids []string, silentMS []uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for id, e := range l.runners {
		if silent := now.Sub(e.lastSeen); e.streams > 0 && silent <= l.timeout {
			ids = append(ids, id)
			silentMS = append(silentMS, uint32(silent/time.Millisecond))
		}
	}
	return ids, silentMS
}

// Remote records a follower's report of the runners streaming to it. Each
// counts as heard from when the follower last heard it (silentMS ago, if
// given; a report without it counts as now). A change wakes the
// dispatcher, since runners may have come or gone.
func (l *Liveness) Remote(server string, ids []string, silentMS []uint32) {
	now := time.Now()
	set := remoteSet{ids: make(map[string]bool, len(ids)), at: now}
	l.mu.Lock()
	for i, id := range ids {
		set.ids[id] = true
		heard := now
		if i < len(silentMS) {
			heard = now.Add(-time.Duration(silentMS[i]) * time.Millisecond)
		}
		if e := l.entry(id); heard.After(e.lastSeen) {
			e.lastSeen = heard
		}
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

// onOpenSet installs a hook called whenever a stream opens or closes (the
// leader uses it to wake the dispatcher).
func (l *Liveness) onOpenSet(f func()) {
	l.mu.Lock()
	l.onOpen = f
	l.mu.Unlock()
}
