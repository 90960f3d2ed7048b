package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"

	"github.com/outpost-run/outpost/fsm"
	"github.com/outpost-run/outpost/fsm/state"
)

// ErrNoLeader is returned by a Backend when no leader can take a write right
// now (an election is under way or quorum is lost). Clients retry it.
var ErrNoLeader = errors.New("no cluster leader")

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
	code := connect.CodeInternal
	switch {
	case errors.Is(err, state.ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, state.ErrAmbiguous), errors.Is(err, fsm.ErrInvalidEntry):
		code = connect.CodeInvalidArgument
	case errors.Is(err, state.ErrConflict), errors.Is(err, state.ErrStaleLease):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, ErrNoLeader):
		code = connect.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	}
	return connect.NewError(code, errors.New(trimSentinel(err.Error())))
}

// trimSentinel drops a sentinel word from the end of a message where the
// words before it already say why ("job j-1 already canceled: conflict",
// "prefix "j-" matches 12 jobs: …: ambiguous id prefix"); the RPC code
// says the rest. "not found" and "stale lease" stay: they are the reason
// ("job "j-nope": not found"), and a message without them says nothing.
func trimSentinel(msg string) string {
	for _, s := range []error{state.ErrConflict, state.ErrAmbiguous, fsm.ErrInvalidEntry} {
		if t, ok := strings.CutSuffix(msg, ": "+s.Error()); ok {
			return t
		}
	}
	return msg
}

func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// UnavailableOnReset is a client interceptor: connect-go reports a server
// that died mid-call as canceled (connection reset) or unknown (response
// cut short), which callers would not retry. When the caller did not
// cancel, the server was in fact unavailable.
func UnavailableOnReset() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			if err != nil && ctx.Err() == nil && cutOff(err) {
				return nil, connect.NewError(connect.CodeUnavailable, err)
			}
			return resp, err
		}
	})
}

func cutOff(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeCanceled:
		return true
	case connect.CodeUnknown:
		return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
			strings.Contains(err.Error(), "unexpected EOF") || strings.Contains(err.Error(), "connection reset")
	}
	return false
}
