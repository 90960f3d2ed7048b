package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
)

// The kinds are wire names between servers, perhaps of neighbouring
// versions, and the codes are what clients retry or give up on: both are
// pinned here, as they were before the two mappings became one.
func TestRefusalKindsAndCodes(t *testing.T) {
	cases := []struct {
		sentinel error
		kind     string
		code     connect.Code
		msg      string // what a client reads
	}{
		{state.ErrNotFound, "not_found", connect.CodeNotFound, `job "j-1": not found`},
		{state.ErrStaleLease, "stale_lease", connect.CodeFailedPrecondition, `job "j-1": stale lease`},
		{state.ErrConflict, "conflict", connect.CodeFailedPrecondition, `job "j-1"`},
		{state.ErrAmbiguous, "ambiguous", connect.CodeInvalidArgument, `job "j-1"`},
		{fsm.ErrInvalidEntry, "invalid", connect.CodeInvalidArgument, `job "j-1"`},
		{state.ErrInvalid, "invalid_report", connect.CodeInternal, `job "j-1": invalid report`},
		{state.ErrLogIncomplete, "log_incomplete", connect.CodeInternal, `job "j-1": final log incomplete`},
	}
	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			err := fmt.Errorf(`job "j-1": %w`, tc.sentinel)
			if k := ErrorKind(err); k != tc.kind {
				t.Fatalf("ErrorKind = %q, want %q", k, tc.kind)
			}
			back := RebuildError(tc.kind, err.Error())
			if !errors.Is(back, tc.sentinel) || back.Error() != err.Error() {
				t.Fatalf("rebuilt %q (%v), want %q matching %v", back, back, err, tc.sentinel)
			}
			for name, e := range map[string]error{"local": err, "forwarded": back} {
				ce := toConnect(e)
				if connect.CodeOf(ce) != tc.code {
					t.Errorf("%s: code %v, want %v", name, connect.CodeOf(ce), tc.code)
				}
				var c *connect.Error
				if errors.As(ce, &c) && c.Message() != tc.msg {
					t.Errorf("%s: message %q, want %q", name, c.Message(), tc.msg)
				}
			}
		})
	}
}

func TestOtherErrorsCodes(t *testing.T) {
	cases := []struct {
		err  error
		kind string
		code connect.Code
	}{
		{fmt.Errorf("%w: no leader elected", ErrNoLeader), "internal", connect.CodeUnavailable},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), "internal", connect.CodeDeadlineExceeded},
		{fmt.Errorf("waiting: %w", context.Canceled), "internal", connect.CodeCanceled},
		{errors.New("disk on fire"), "internal", connect.CodeInternal},
		// A connect error keeps its own code.
		{connect.NewError(connect.CodeResourceExhausted, errors.New("slow down")), "internal", connect.CodeResourceExhausted},
	}
	for _, tc := range cases {
		if k := ErrorKind(tc.err); k != tc.kind {
			t.Errorf("%v: kind %q, want %q", tc.err, k, tc.kind)
		}
		if c := connect.CodeOf(toConnect(tc.err)); c != tc.code {
			t.Errorf("%v: code %v, want %v", tc.err, c, tc.code)
		}
	}
	if toConnect(nil) != nil {
		t.Error("toConnect(nil) is not nil")
	}
	// A kind this server does not know (a newer leader's) keeps the
	// message and matches no sentinel.
	e := RebuildError("quota_exceeded", "project p: over quota")
	if e.Error() != "project p: over quota" || ErrorKind(e) != "internal" {
		t.Errorf("unknown kind: %q, kind %q", e, ErrorKind(e))
	}
}
