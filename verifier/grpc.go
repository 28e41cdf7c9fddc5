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

func (v *Verifier) authorizeGRPC(ctx context.Context, fullMethod string) (context.Context, error) {
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
	switch res.Outcome {
	case Allowed:
		return withPeer(ctx, res), nil
	case Unauthenticated:
		return nil, status.Error(codes.Unauthenticated, res.Message())
	case Forbidden:
		return nil, status.Error(codes.PermissionDenied, res.Message())
	case Unavailable:
		return nil, status.Error(codes.Unavailable, res.Message())
	}
	return nil, status.Error(codes.InvalidArgument, res.Message())
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
