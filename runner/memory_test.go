package runner

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testwait"
)

// newTrimRunner is a runner that is never connected, with a counting trim.
func newTrimRunner(t *testing.T, after time.Duration) (*Runner, *atomic.Int32) {
	t.Helper()
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	var trims atomic.Int32
	r.trimFn = func() { trims.Add(1) }
	r.ReturnMemoryWhenIdle(after)
	return r, &trims
}

func (r *Runner) fakeJob(id string, running bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if running {
		r.jobs[jobKey{id: id}] = &execution{}
	} else {
		delete(r.jobs, jobKey{id: id})
	}
	r.jobsChanged()
}

// trimsReach waits until the runner has trimmed n times.
func trimsReach(t *testing.T, trims *atomic.Int32, n int32) {
	t.Helper()
	testwait.For(t, 10*time.Second, func() (bool, error) {
		got := trims.Load()
		return got == n, fmt.Errorf("%d trims, want %d", got, n)
	})
}

// The idle trim comes once after the last job ends, never while a job
// runs, and never for a runner that has run nothing.
func TestIdleTrimOncePerIdlePeriod(t *testing.T) {
	r, trims := newTrimRunner(t, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if n := trims.Load(); n != 0 {
		t.Fatalf("%d trims before any job ran", n)
	}

	r.fakeJob("a", true)
	r.fakeJob("b", true)
	r.fakeJob("a", false) // b still runs
	time.Sleep(50 * time.Millisecond)
	if n := trims.Load(); n != 0 {
		t.Fatalf("%d trims while a job runs", n)
	}

	r.fakeJob("b", false)
	trimsReach(t, trims, 1) // the trim after the last job
	time.Sleep(50 * time.Millisecond)
	if n := trims.Load(); n != 1 {
		t.Fatalf("%d trims in one idle period, want 1", n)
	}

	r.fakeJob("c", true)
	r.fakeJob("c", false)
	trimsReach(t, trims, 2) // the trim of the next idle period
}

// A job that starts before the delay is over cancels the trim, and so does
// closing the runner.
func TestIdleTrimCanceled(t *testing.T) {
	r, trims := newTrimRunner(t, time.Hour)
	r.fakeJob("a", true)
	r.fakeJob("a", false)
	r.mu.Lock()
	armed := r.trimTimer != nil
	r.mu.Unlock()
	if !armed {
		t.Fatal("no trim armed after the last job ended")
	}
	r.fakeJob("b", true)
	r.mu.Lock()
	armed = r.trimTimer != nil
	r.mu.Unlock()
	if armed {
		t.Fatal("trim still armed while a job runs")
	}
	r.fakeJob("b", false)
	r.close()
	r.mu.Lock()
	armed = r.trimTimer != nil
	r.mu.Unlock()
	if armed || trims.Load() != 0 {
		t.Fatalf("after close: armed %v, %d trims", armed, trims.Load())
	}
}

// Off by default: a runner inside a server agent never forces collections.
func TestIdleTrimOffByDefault(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	r.fakeJob("a", true)
	r.fakeJob("a", false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.trimTimer != nil {
		t.Fatal("idle trim armed without ReturnMemoryWhenIdle")
	}
}
