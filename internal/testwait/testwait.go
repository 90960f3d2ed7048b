// Package testwait is how tests wait: they retry a condition, backing off,
// until it holds or a deadline passes, never sleep a fixed time and hope.
// A fixed sleep is either too short on a loaded machine (a flaky test) or
// too long everywhere else (a slow one).
//
// Every test package may import it: it imports nothing of outpost, so
// runner tests use it without reaching agent, and agent's exported test
// servers (agent/testing.go) and the process harness (internal/testcluster)
// wait with it too.
package testwait

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Backoff is how long Poll waits between calls of a condition: Min after
// the first, doubling up to Max. Min equal to Max polls at a steady rate,
// for a caller that measures how long the condition took.
type Backoff struct {
	Min, Max time.Duration
}

// InProcess suits conditions that read memory in this process: cheap to
// check, so checked often, and a test notices at once when they hold.
func InProcess() Backoff { return Backoff{Min: time.Millisecond, Max: 50 * time.Millisecond} }

// For calls cond until it reports true, backing off (InProcess), and fails
// the test if it has not within timeout. While the condition does not hold,
// cond's error says what it saw; the last one is the failure message, so
// make it specific ("job j-1 is running, want canceled"). A cond that finds
// something that can never come right returns Abort(err) to fail at once.
// For must be called from the test's goroutine; so cond may call t.Fatal.
func For(t testing.TB, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := Poll(ctx, InProcess(), cond); err != nil {
		t.Fatalf("condition not met within %v: %v", timeout, err)
	}
}

// Poll calls cond until it reports true, returns an Abort error, or ctx
// ends, waiting between calls as b says. It returns nil once cond holds;
// the aborting error; or, when ctx ends first, cond's last error (ctx's
// error if cond gave none). It may be called from any goroutine.
func Poll(ctx context.Context, b Backoff, cond func() (bool, error)) error {
	wait := max(b.Min, time.Microsecond)
	var last error
	for {
		ok, err := cond()
		var abort *abortError
		if errors.As(err, &abort) {
			return abort.err
		}
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			if last == nil {
				return fmt.Errorf("condition never held: %w", ctx.Err())
			}
			return last
		case <-timer.C:
		}
		wait = min(2*wait, max(b.Max, b.Min))
	}
}

// Abort wraps an error that ends a Poll (or For) at once: a condition that
// can no longer come true, such as a process that exited.
func Abort(err error) error { return &abortError{err: err} }

type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }
