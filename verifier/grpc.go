package verifier

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// AuthenticateGRPC authenticates the peer of a gRPC call: its TLS client
// certificate chain or else an "authorization: Bearer <JWT-SVID>" metadata
// entry.
func (a *Authenticator) AuthenticateGRPC(ctx context.Context) (Peer, error) {
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			return a.Certificates(ti.State.PeerCertificates)
		}
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for _, v := range md.Get("authorization") {
			if tok, ok := bearer(v); ok {
				return a.JWT(tok)
			}
		}
	}
	return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate or bearer JWT-SVID"))
}

func (v *Verifier) authorizeGRPC(ctx context.Context, fullMethod string) (context.Context, error) {
	action := Action{Kind: "grpc", Path: fullMethod}
	p, err := v.Auth.AuthenticateGRPC(ctx)
	if err != nil {
		d := v.Denied(action, err)
		return nil, status.Error(codes.Unauthenticated, d.Reason)
	}
	req := Request{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		req.Headers = md
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		req.Source = remoteAddr(pr.Addr.String())
	}
	d := v.Check(ctx, &p, action, req)
	if !d.Allow {
		return nil, status.Error(codes.PermissionDenied, d.Explanation())
	}
	return withPeer(ctx, &p, d), nil
}

// UnaryServerInterceptor authenticates and authorizes every unary call
// (action kind "grpc", path = the full method), answering Unauthenticated or
// PermissionDenied with the reason.
func (v *Verifier) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := v.authorizeGRPC(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func (v *Verifier) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := v.authorizeGRPC(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *wrappedStream) Context() context.Context { return s.ctx }
