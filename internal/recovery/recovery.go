// Package recovery keeps agentid's servers alive through a bug in one of
// their handlers: a panic fails that one call with codes.Internal and is
// logged with its stack. net/http already does this per request; gRPC
// servers do not, and neither does the plugin SDK's server.
package recovery

import (
	"context"
	"fmt"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LogFunc logs an error with key/value pairs: hclog.Logger.Error and
// slog.Logger.Error both fit.
type LogFunc func(msg string, keyvals ...any)

// Msg is the message of the log line for a recovered panic.
const Msg = "Recovered from a panic; please report it"

// Call, deferred by a handler with a named error result, turns a panic
// into an Internal error for that one call and a log line with the panic
// and its stack.
// SPIRE plugins use it in each handler: the SDK serves them on go-plugin's
// default gRPC server, which takes no interceptors, and a panic there
// would kill the plugin process and fail every later call.
//
//	func (p *Plugin) Attest(ctx context.Context, req *Req) (_ *Resp, err error) {
//		defer recovery.Call(p.logger().Error, "Attest", &err)
//		…
//	}
func Call(log LogFunc, method string, err *error) {
	if r := recover(); r != nil {
		*err = recovered(log, method, r)
	}
}

// recovered logs the panic with its stack and returns the caller's error:
// it names the method only, as callers may be untrusted (agents, Envoy).
func recovered(log LogFunc, method string, r any) error {
	log(Msg, "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "agentid: %s: internal error (logged by the server)", method)
}

// UnaryServerInterceptor recovers panics of unary handlers.
func UnaryServerInterceptor(log LogFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, recovered(log, info.FullMethod, r)
			}
		}()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor recovers panics of stream handlers.
func StreamServerInterceptor(log LogFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = recovered(log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}
