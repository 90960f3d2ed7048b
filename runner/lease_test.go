package runner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/outpost-run/outpost/internal/testwait"
	"github.com/outpost-run/outpost/rpc"
)

func TestTimingsKeepTheirOrder(t *testing.T) {
	for _, period := range []time.Duration{2 * time.Second, 3 * time.Second, 5 * time.Second, 15 * time.Second, time.Minute, 10 * time.Minute} {
		tm := rpc.Timings(period)
		if !(tm.Heartbeat < tm.Move && tm.Move < tm.Stop && tm.Stop < tm.Deadline && tm.Deadline < tm.Period) {
			t.Errorf("period %s: want heartbeat < move < stop < deadline < period, got %+v", period, tm)
		}
		if tm.Stop <= 2*tm.Heartbeat {
			t.Errorf("period %s: no room to start a job: stop %s, heartbeat %s", period, tm.Stop, tm.Heartbeat)
		}
		if tm.Move < 2*tm.Heartbeat && tm.Move < tm.Stop-tm.Heartbeat {
			t.Errorf("period %s: the move time %s allows fewer than two heartbeats (%s)", period, tm.Move, tm.Heartbeat)
		}
	}
}

// lapses records the epochs leaseKeeper reports as lapsed.
type lapses struct {
	mu     sync.Mutex
	epochs []uint64
}

func (l *lapses) add(e uint64) {
	l.mu.Lock()
	l.epochs = append(l.epochs, e)
	l.mu.Unlock()
}

func (l *lapses) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.epochs)
}

func TestLeaseKeeper(t *testing.T) {
	var seen lapses
	var deadlines []time.Time
	k := newLeaseKeeper(2*time.Second, seen.add, func(d time.Time) { deadlines = append(deadlines, d) })
	defer k.close()
	tm := k.timings()

	if ok, _ := k.valid(); ok {
		t.Fatal("a lease never confirmed is valid")
	}
	sent := time.Now()
	k.confirm(sent)
	ok, epoch := k.valid()
	if !ok {
		t.Fatal("a lease just confirmed is not valid")
	}
	if len(deadlines) != 1 || !deadlines[0].Equal(sent.Add(tm.Deadline)) {
		t.Fatalf("deadlines told %v, want one at send time + %s", deadlines, tm.Deadline)
	}
	// An older confirmation changes nothing.
	k.confirm(sent.Add(-time.Second))
	if len(deadlines) != 1 {
		t.Fatalf("an older confirmation moved the deadline: %v", deadlines)
	}
	// A confirmation of a heartbeat sent too long ago does not revive it.
	k2 := newLeaseKeeper(2*time.Second, nil, nil)
	defer k2.close()
	k2.confirm(time.Now().Add(-tm.Stop - time.Millisecond))
	if ok, _ := k2.valid(); ok {
		t.Fatal("a confirmation arriving after its stop time made the lease valid")
	}

	// Without further confirmations the lease lapses at its stop time.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testwait.For(t, 10*time.Second, func() (bool, error) {
		return seen.count() > 0, errors.New("the lease has not lapsed")
	})
	if seen.count() != 1 {
		t.Fatalf("lapses seen: %v, want one", seen.epochs)
	}
	if k.stillValid(epoch) {
		t.Fatal("the lease still counts as valid in its old epoch after a lapse")
	}
	// Confirmed again: valid in a new epoch only.
	k.confirm(time.Now())
	ok, again := k.valid()
	if !ok || again == epoch {
		t.Fatalf("after a new confirmation: valid %v in epoch %d (old epoch %d)", ok, again, epoch)
	}
	if _, err := k.wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// A lease that ran out while its timer could not fire (a frozen process)
// counts as lapsed when the next confirmation comes, and the attempts of
// the old epoch are stopped.
func TestLeaseKeeperLapseSeenLate(t *testing.T) {
	var seen lapses
	k := newLeaseKeeper(2*time.Second, seen.add, nil)
	defer k.close()
	tm := k.timings()
	k.confirm(time.Now())
	_, epoch := k.valid()
	// Pretend the process slept through the stop time: stop the timer and
	// move the confirmation back.
	k.mu.Lock()
	k.stop.Stop()
	k.confirmed = k.confirmed.Add(-tm.Stop - time.Second)
	k.mu.Unlock()
	k.confirm(time.Now())
	if seen.count() != 1 || seen.epochs[0] <= epoch {
		t.Fatalf("lapses seen %v, want one newer than epoch %d", seen.epochs, epoch)
	}
	if k.stillValid(epoch) {
		t.Fatal("a start from before the unseen lapse still counts")
	}
}

func TestServerListLearnsAndMoves(t *testing.T) {
	dir := t.TempDir()
	log := hclog.NewNullLogger()
	l := newServerList([]string{"127.0.0.1:1"}, dir, true, log)
	if got := l.current(); got != "http://127.0.0.1:1" {
		t.Fatalf("current = %q", got)
	}
	l.learn([]string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"})
	if got := []string{l.next(), l.next(), l.next()}; got[0] != "http://127.0.0.1:2" || got[1] != "http://127.0.0.1:3" || got[2] != "http://127.0.0.1:1" {
		t.Fatalf("moving goes %v", got)
	}
	// Kept across restarts.
	if _, err := os.Stat(filepath.Join(dir, serversFile)); err != nil {
		t.Fatal(err)
	}
	again := newServerList([]string{"127.0.0.1:1"}, dir, true, log)
	if got := []string{again.current(), again.next()}; got[1] != "http://127.0.0.1:2" {
		t.Fatalf("after a restart the runner moves %v", got)
	}
	// A runner held to its servers learns nothing.
	fixed := newServerList([]string{"127.0.0.1:1"}, dir, false, log)
	fixed.learn([]string{"http://127.0.0.1:9"})
	if got := fixed.next(); got != "http://127.0.0.1:1" {
		t.Fatalf("a fixed runner moved to %q", got)
	}
}
