package verifier_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/agentid/agentid/verifier"
)

// Review 20: a unary handler that panics (a server with a recovery
// interceptor outside ours survives it) leaves the call's guard armed:
// its context is never cancelled and its timer re-authenticates the
// finished call every StreamRecheckInterval until the peer expires — and
// records a "revoked" refusal for a call that ended long ago.
func TestGRPCUnaryPanicStopsItsGuard(t *testing.T) {
	e, view, wall, rec := liveEnv(t)
	icpt := e.v.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.jwt))
	info := &grpc.UnaryServerInfo{FullMethod: "/grpc.testing.TestService/UnaryCall"}
	var hctx context.Context
	panicky := func(ctx context.Context, _ any) (any, error) {
		hctx = ctx
		panic("handler bug")
	}
	func() {
		defer func() { recover() }() // what grpc recovery middleware does
		icpt(ctx, nil, info, panicky)
	}()
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(verifier.StreamRecheckInterval + 500*time.Millisecond)
	if hctx.Err() == nil {
		t.Errorf("the panicked call's context is still live after the interceptor returned (its guard's timer still runs)")
	}
	if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonRevoked)); n != 0 {
		t.Errorf("%d revoked refusals recorded for a call that had already ended (by a panic) before the revocation, want 0", n)
	}
}

// panicStream is a server stream with only a context.
type panicStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s panicStream) Context() context.Context { return s.ctx }

// Review 20 (the same gap, pre-existing in the stream interceptor): a
// stream handler that panics leaves its guard's timer re-checking the
// ended stream, which records a refusal at the task's later revocation.
func TestGRPCStreamPanicStopsItsGuard(t *testing.T) {
	e, view, wall, rec := liveEnv(t)
	icpt := e.v.StreamServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.jwt))
	info := &grpc.StreamServerInfo{FullMethod: "/grpc.testing.TestService/FullDuplexCall"}
	func() {
		defer func() { recover() }()
		icpt(nil, panicStream{ctx: ctx}, info, func(any, grpc.ServerStream) error { panic("handler bug") })
	}()
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(verifier.StreamRecheckInterval + 500*time.Millisecond)
	if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonRevoked)); n != 0 {
		t.Errorf("%d revoked refusals recorded for a stream that had already ended (by a panic) before the revocation, want 0", n)
	}
}
