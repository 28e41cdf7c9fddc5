package server

import (
	"context"
	"slices"
	"strings"
	"time"

	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// OperatorServer returns a gRPC server with the service registered for
// operators: every RPC, no authentication (serve it on a unix socket whose
// permissions say who is an operator; see ListenUnix). DelegateTask still
// needs a caller credential there: a JWT-SVID bearer, if enabled.
func (s *Service) OperatorServer(opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(opts...)
	registrarv1.RegisterRegistrarServer(g, s)
	return g
}

// AgentServer returns a gRPC server for agent tasks: SPIFFE mTLS with svids
// as the registrar's own SVID, accepting clients of the registrar's trust
// domain whose chains verify against bundles. Only DelegateTask is served;
// the other RPCs answer PermissionDenied. Interceptors in opts run outside
// the one that refuses those RPCs, so they see every call; the mTLS
// credentials override any in opts.
func (s *Service) AgentServer(svids x509svid.Source, bundles x509bundle.Source, opts ...grpc.ServerOption) *grpc.Server {
	tc := tlsconfig.MTLSServerConfig(svids, bundles, tlsconfig.AuthorizeMemberOf(s.r.TrustDomain()))
	// A resumed session skips VerifyPeerCertificate (crypto/tls): without
	// tickets every connection verifies the client's current chain.
	tc.SessionTicketsDisabled = true
	opts = append(slices.Clip(opts), grpc.Creds(credentials.NewTLS(tc)), grpc.ChainUnaryInterceptor(delegateOnly), grpc.ChainStreamInterceptor(livenessOnly))
	g := grpc.NewServer(opts...)
	registrarv1.RegisterRegistrarServer(g, s)
	return g
}

// errOperatorsOnly answers the operator RPCs on the agent listener.
var errOperatorsOnly = status.Error(codes.PermissionDenied, "operators only: use the local socket")

func delegateOnly(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod != registrarv1.Registrar_DelegateTask_FullMethodName {
		return nil, errOperatorsOnly
	}
	return handler(ctx, req)
}

// callerID is an authenticated DelegateTask caller.
type callerID struct {
	id     spiffeid.ID
	via    string    // "x509" or "jwt"
	issued time.Time // when SPIRE issued the credential (registrar.Request.CallerIssued)
}

func (c callerID) String() string { return c.id.String() + " (" + c.via + ")" }

// caller authenticates a DelegateTask caller: the JWT-SVID bearer if the
// call carries one (it is then the only credential considered), else the
// TLS peer's X.509-SVID, verified by the handshake. The caller must be a
// task of the registrar's trust domain.
func (s *Service) caller(ctx context.Context) (callerID, error) {
	var c callerID
	if token, ok, err := bearer(ctx); err != nil {
		return c, err
	} else if ok {
		id, issued, err := s.jwtCaller(token)
		c = callerID{id: id, via: "jwt", issued: issued}
		if err != nil {
			return c, err
		}
	} else {
		id, notBefore, err := tlsCaller(ctx)
		c = callerID{id: id, via: "x509", issued: notBefore.Add(registrar.X509Backdate)}
		if err != nil {
			return c, err
		}
	}
	if c.id.TrustDomain() != s.r.TrustDomain() {
		return c, status.Errorf(codes.PermissionDenied, "caller %s is outside the trust domain %s", c.id, s.r.TrustDomain())
	}
	if !svid.IsTaskID(c.id) {
		return c, status.Errorf(codes.PermissionDenied, "caller %s is not an agent task: only tasks delegate", c.id)
	}
	return c, nil
}

// bearer returns the call's "authorization: Bearer <token>", if any.
func bearer(ctx context.Context) (string, bool, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", false, nil
	case len(vals) > 1:
		return "", false, status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", false, status.Error(codes.Unauthenticated, `authorization is not "Bearer <JWT-SVID>"`)
	}
	return token, true, nil
}

// jwtCaller validates a JWT-SVID bearer and returns its SPIFFE ID and
// issue time (iat, which SPIRE always sets; a token without one is refused:
// its incarnation could not be told).
func (s *Service) jwtCaller(token string) (spiffeid.ID, time.Time, error) {
	if s.cfg.jwtBundles == nil || s.cfg.jwtAudience == "" {
		return spiffeid.ID{}, time.Time{}, status.Error(codes.Unauthenticated, "JWT-SVID callers are not enabled on this registrar (jwt_audience)")
	}
	sv, err := jwtsvid.ParseAndValidate(token, s.cfg.jwtBundles, []string{s.cfg.jwtAudience})
	if err != nil {
		return spiffeid.ID{}, time.Time{}, status.Errorf(codes.Unauthenticated, "JWT-SVID: %v", err)
	}
	iat, ok := sv.Claims["iat"].(float64)
	if !ok || iat <= 0 {
		return sv.ID, time.Time{}, status.Error(codes.Unauthenticated, "JWT-SVID: no iat (issue time) claim")
	}
	return sv.ID, time.Unix(int64(iat), 0), nil
}

// tlsCaller returns the SPIFFE ID of the TLS client certificate. go-spiffe
// verifies the chain in VerifyPeerCertificate (State.VerifiedChains stays
// empty), which every handshake runs since AgentServer disables session
// tickets; only AgentServer's connections carry TLSInfo.
func tlsCaller(ctx context.Context) (spiffeid.ID, time.Time, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, time.Time{}, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, time.Time{}, status.Error(codes.Unauthenticated,
			"no caller credential: call over SPIFFE mTLS with the task's X.509-SVID, or send a JWT-SVID bearer")
	}
	leaf := info.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return id, time.Time{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return id, leaf.NotBefore, nil
}
