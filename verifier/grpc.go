package verifier

import (
	"context"
	"strings"

	"github.com/agentid/agentid/policies"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// GRPCCredential is the credential of a gRPC call: its TLS client
// certificate chain or else an "authorization: Bearer <JWT-SVID>" entry.
func GRPCCredential(ctx context.Context) Credential {
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			return Credential{Kind: CredentialX509, Chain: ti.State.PeerCertificates}
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return bearerCredential(md.Get("authorization"))
}

// AuthenticateGRPC authenticates the peer of a gRPC call (see GRPCCredential).
func (a *Authenticator) AuthenticateGRPC(ctx context.Context) (Peer, error) {
	return a.Authenticate(GRPCCredential(ctx))
}

// authorizeGRPC decides a call; for a stream (guard non-nil) it also
// starts the guard that holds the stream to its peer's liveness and
// expiry, whose context the returned one is.
func (v *Verifier) authorizeGRPC(ctx context.Context, fullMethod string, guard **streamGuard) (context.Context, error) {
	p := getPending()
	defer p.release()
	q, res := &p.q, &p.r
	q.Frontend, q.Credential = FrontendGRPC, GRPCCredential(ctx)
	q.Action = Action{Kind: policies.KindGRPC, Path: fullMethod}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		// A caller's x-agentid-* metadata is neither decided on nor seen
		// by the handler (metadata keys are lower case).
		if hasIdentityKey(md) {
			md = md.Copy()
			for k := range md {
				if strings.HasPrefix(k, HeaderPrefix) {
					delete(md, k)
				}
			}
			ctx = metadata.NewIncomingContext(ctx, md)
		}
		q.Request.Headers = md
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		q.Request.Source = remoteAddr(pr.Addr.String())
	}
	p.decide(v)
	if !res.Allowed() {
		return nil, grpcRefusal(res)
	}
	ctx = withPeer(ctx, res)
	if guard != nil {
		*guard = v.newStreamGuard(ctx, q, res.Peer.Expires(), grpcRefusal, func(error) {})
		ctx = (*guard).ctx
	}
	return ctx, nil
}

// grpcRefusal is the status a refused call (or a stream ended by its
// guard) gets.
func grpcRefusal(res *Result) error {
	switch res.Outcome {
	case Unauthenticated:
		return status.Error(codes.Unauthenticated, res.Message())
	case Forbidden:
		return status.Error(codes.PermissionDenied, res.Message())
	case Unavailable:
		return status.Error(codes.Unavailable, res.Message())
	}
	return status.Error(codes.InvalidArgument, res.Message())
}

func hasIdentityKey(md metadata.MD) bool {
	for k := range md {
		if strings.HasPrefix(k, HeaderPrefix) {
			return true
		}
	}
	return false
}

// UnaryServerInterceptor authenticates and authorizes every unary call
// (action kind "grpc", path = the full method), answering Unauthenticated or
// PermissionDenied with the reason. A call in progress is held to its peer
// as a stream is: re-checked every StreamRecheckInterval while the
// handler runs (at a refusal the handler's context is cancelled) and once
// more before the answer is sent, so that a peer refused meanwhile gets
// the refusal, not the result; the refusal is recorded once.
func (v *Verifier) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var g *streamGuard
		ctx, err := v.authorizeGRPC(ctx, info.FullMethod, &g)
		if err != nil {
			return nil, err
		}
		defer g.stop() // a handler that panics too
		resp, err := handler(ctx, req)
		// The call's answer goes to a peer still allowed: one refused
		// meanwhile (revoked, expired) gets the refusal instead.
		if ferr := g.check(); ferr != nil {
			return nil, ferr
		}
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams, and
// holds each stream to its peer for as long as it is open: every message
// received or sent re-runs the authentication stages (credential, trust
// domains, claims, task liveness — cached, so cheap) and an idle stream is
// re-checked every StreamRecheckInterval. Once the peer is refused — its
// task, or one in its chain, revoked; its SVID or task deadline expired —
// the stream ends with the status a new call would get (Unauthenticated
// and the reason), whatever the handler returns; the refusal is recorded
// and counted once, like any refusal. The handler's context is cancelled
// then (context.Cause is that status), and a handler blocked in RecvMsg
// gets it. The policy is not asked again during a stream (its method does
// not change): a policy reload applies to the calls that follow.
func (v *Verifier) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		var g *streamGuard
		ctx, err := v.authorizeGRPC(ss.Context(), info.FullMethod, &g)
		if err != nil {
			return err
		}
		defer g.stop() // a handler that panics too
		s := &guardedStream{ServerStream: ss, ctx: ctx, g: g, quit: make(chan struct{})}
		defer close(s.quit)
		err = handler(srv, s)
		g.stop() // no refusal after this
		if ferr := g.failure(); ferr != nil {
			return ferr
		}
		return err
	}
}

// guardedStream is a server stream under a streamGuard. RecvMsg waits for
// the underlying stream in a receiver goroutine of its own (started at
// the first RecvMsg), so that the guard can end a stream whose handler is
// blocked in it: grpc-go cannot interrupt a RecvMsg, and ends the
// underlying stream (unblocking the receiver) once the handler returns.
type guardedStream struct {
	grpc.ServerStream
	ctx context.Context
	g   *streamGuard

	recvs chan any      // the receiver's next message to fill
	got   chan error    // its result (buffered: it may come after the guard ended)
	quit  chan struct{} // closed when the interceptor returns
}

func (s *guardedStream) Context() context.Context { return s.ctx }

// SendMsg sends m if the peer still passes.
func (s *guardedStream) SendMsg(m any) error {
	if err := s.g.check(); err != nil {
		return err
	}
	return s.ServerStream.SendMsg(m)
}

// RecvMsg receives m and hands it over only if the peer still passes.
func (s *guardedStream) RecvMsg(m any) error {
	if err := s.g.failure(); err != nil {
		return err
	}
	if s.recvs == nil {
		s.recvs, s.got = make(chan any), make(chan error, 1)
		go s.receive()
	}
	select {
	case s.recvs <- m:
	case <-s.quit: // called after the handler returned
		return errStreamEnded
	}
	select {
	case err := <-s.got:
		if err != nil {
			return err // io.EOF at the client's half-close, or the stream's end
		}
		return s.g.check()
	case <-s.g.done:
		return s.g.failure()
	}
}

var errStreamEnded = status.Error(codes.Canceled, "verifier: the stream has ended")

func (s *guardedStream) receive() {
	for {
		select {
		case m := <-s.recvs:
			s.got <- s.ServerStream.RecvMsg(m)
		case <-s.quit:
			return
		}
	}
}
