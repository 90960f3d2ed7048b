package rpc

import (
	"context"
	"errors"
	"io"
	"strings"

	"connectrpc.com/connect"
)

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
