package testcluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outpost-run/outpost/internal/testwait"
)

// processBackoff polls quickly at first, so a condition that is almost
// true costs little, then slower, so a long wait does not hammer a server
// that is busy recovering.
func processBackoff() testwait.Backoff {
	return testwait.Backoff{Min: 10 * time.Millisecond, Max: 500 * time.Millisecond}
}

// WaitFor calls cond until it reports true, backing off between calls, and
// fails the test if it has not within timeout. cond's message says what it
// saw; the last one is the failure message, so make it specific ("job j-1 is
// running, want canceled"). It must be called from the test's goroutine.
func WaitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll(ctx, func() (bool, string, error) {
		ok, msg := cond()
		return ok, msg, nil
	}); err != nil {
		t.Fatalf("testcluster: condition not met within %v: %v", timeout, err)
	}
}

// poll calls cond until it reports true, returns an error, or ctx ends. The
// error on timeout carries cond's last message. It is testwait.Poll with
// the messages of this package's conditions.
func poll(ctx context.Context, cond func() (bool, string, error)) error {
	return testwait.Poll(ctx, processBackoff(), func() (bool, error) {
		ok, msg, err := cond()
		switch {
		case err != nil:
			return false, testwait.Abort(err)
		case ok || msg == "":
			return ok, nil
		}
		return false, errors.New(msg)
	})
}
