package rpc

import (
	"context"

	"connectrpc.com/connect"
)

// TokenHeader carries the ACL token (the server also accepts
// `Authorization: Bearer`).
const TokenHeader = "X-Outpost-Token"

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	token string
}

// WithToken sends token as the ACL token of every call, unary and
// streaming.
func WithToken(token string) ClientOption {
	return func(o *clientOptions) { o.token = token }
}

// tokenInterceptor puts the token in every request's headers.
func tokenInterceptor(token string) connect.Interceptor { return tokenSender(token) }

type tokenSender string

func (t tokenSender) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if t != "" && req.Spec().IsClient {
			req.Header().Set(TokenHeader, string(t))
		}
		return next(ctx, req)
	}
}

func (t tokenSender) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if t != "" {
			conn.RequestHeader().Set(TokenHeader, string(t))
		}
		return conn
	}
}

func (t tokenSender) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
