package testwait

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	gone := errors.New("process exited")
	for _, c := range []struct {
		name    string
		timeout time.Duration
		cond    func(calls int) (bool, error)
		calls   int    // calls expected, 0 for "several"
		err     string // "" for nil
	}{
		{"holds at once", time.Second, func(int) (bool, error) { return true, nil }, 1, ""},
		{"holds at the third call", time.Second, func(n int) (bool, error) { return n == 3, fmt.Errorf("call %d", n) }, 3, ""},
		{"timeout gives the last reason", 30 * time.Millisecond, func(n int) (bool, error) { return false, fmt.Errorf("call %d", n) }, 0, "call "},
		{"timeout without a reason", 30 * time.Millisecond, func(int) (bool, error) { return false, nil }, 0, "condition never held: context deadline exceeded"},
		{"abort ends at once", time.Second, func(int) (bool, error) { return false, Abort(gone) }, 1, "process exited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
			defer cancel()
			calls := 0
			err := Poll(ctx, InProcess(), func() (bool, error) { calls++; return c.cond(calls) })
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("Poll = %v, want nil", err)
			case c.err != "" && (err == nil || !strings.HasPrefix(err.Error(), c.err)):
				t.Fatalf("Poll = %v, want an error starting %q", err, c.err)
			case c.calls != 0 && calls != c.calls:
				t.Fatalf("cond called %d times, want %d", calls, c.calls)
			case c.calls == 0 && calls < 2:
				t.Fatalf("cond called %d times before the deadline, want several", calls)
			}
			if c.name == "abort ends at once" && !errors.Is(err, gone) {
				t.Fatalf("Poll = %v, want the aborting error itself", err)
			}
		})
	}
}

// The wait between calls doubles from Min up to Max.
func TestPollBacksOff(t *testing.T) {
	var at []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = Poll(ctx, Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}, func() (bool, error) {
		at = append(at, time.Now())
		return len(at) == 6, nil
	})
	want := []time.Duration{10, 20, 40, 40, 40}
	for i, w := range want {
		if got := at[i+1].Sub(at[i]); got < w*time.Millisecond {
			t.Errorf("wait %d was %v, want at least %v", i, got, w*time.Millisecond)
		}
	}
}

// fatalRecorder stands in for a test that For fails.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestForFailsWithTheLastReason(t *testing.T) {
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		For(f, 20*time.Millisecond, func() (bool, error) { return false, errors.New("job j-1 is running, want canceled") })
	}()
	<-done
	if want := "condition not met within 20ms: job j-1 is running, want canceled"; f.msg != want {
		t.Fatalf("For failed with %q, want %q", f.msg, want)
	}
}
