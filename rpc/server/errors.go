package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
)

// ErrNoLeader is returned by a Backend when no leader can take a write right
// now (an election is under way or quorum is lost). Clients retry it.
var ErrNoLeader = errors.New("no cluster leader")

// refusal is one of the errors the state machine refuses a change with:
// its name on the cluster service (ApplyResponse's error_kind, so that a
// write forwarded to the leader fails on the forwarding server with the
// same sentinel), and the code a client gets for it. A refusal with no
// code of its own (0) is for the runner stream, which reads the sentinel
// itself; to a client it is internal. trim: the sentinel's words only
// restate what the message before them says (see trimSentinel).
type refusal struct {
	err  error
	kind string
	code connect.Code
	trim bool
}

// refusals is the one list of the state machine's sentinels; every
// mapping between sentinels, kinds and codes reads it. The first match
// wins, which matters only for an error that wraps two of them (none
// does today): then the order is that of the codes clients have always
// got, not found before invalid argument before failed precondition.
var refusals = [...]refusal{
	{state.ErrNotFound, "not_found", connect.CodeNotFound, false},
	{state.ErrAmbiguous, "ambiguous", connect.CodeInvalidArgument, true},
	{fsm.ErrInvalidEntry, "invalid", connect.CodeInvalidArgument, true},
	{state.ErrConflict, "conflict", connect.CodeFailedPrecondition, true},
	{state.ErrStaleLease, "stale_lease", connect.CodeFailedPrecondition, false},
	{state.ErrInvalid, "invalid_report", 0, false},
	{state.ErrLogIncomplete, "log_incomplete", 0, false},
}

// kindInternal names an error that is none of the refusals.
const kindInternal = "internal"

// toConnect gives an error its RPC code, so clients can tell "fix your
// request" from "try again".
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	return connect.NewError(codeOf(err), errors.New(trimSentinel(err.Error())))
}

func codeOf(err error) connect.Code {
	for _, r := range refusals {
		if r.code != 0 && errors.Is(err, r.err) {
			return r.code
		}
	}
	switch {
	case errors.Is(err, ErrNoLeader):
		return connect.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	}
	return connect.CodeInternal
}

// trimSentinel drops a sentinel word from the end of a message where the
// words before it already say why ("job j-1 already canceled: conflict",
// "prefix "j-" matches 12 jobs: …: ambiguous id prefix"); the RPC code
// says the rest. "not found" and "stale lease" stay: they are the reason
// ("job "j-nope": not found"), and a message without them says nothing.
func trimSentinel(msg string) string {
	for _, r := range refusals {
		if !r.trim {
			continue
		}
		if t, ok := strings.CutSuffix(msg, ": "+r.err.Error()); ok {
			return t
		}
	}
	return msg
}

// ErrorKind names a state-machine refusal so that it survives the trip
// back to the forwarding server as the same sentinel (see RebuildError);
// "internal" for any other error.
func ErrorKind(err error) string {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r.kind
		}
	}
	return kindInternal
}

// RebuildError is the error a forwarded write failed with on the leader:
// msg, matching (errors.Is) the sentinel that kind names, or no sentinel
// when kind names none.
func RebuildError(kind, msg string) error {
	for _, r := range refusals {
		if r.kind == kind {
			return &remoteError{msg: msg, kind: r.err}
		}
	}
	return errors.New(msg)
}

// remoteError carries the leader's message and matches its sentinel.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}
