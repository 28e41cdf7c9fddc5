package verifier

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/agentid/agentid/policies"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
)

// MaxHeaderBytes bounds the request headers an ext_authz check accepts.
const MaxHeaderBytes = 64 << 10

// ExtAuthz is an Envoy ext_authz v3 gRPC server
// (envoy.service.auth.v3.Authorization/Check), an adapter over the
// Verifier's pipeline.
//
// The peer is identified from, in order: source.certificate (the
// URL-encoded PEM chain Envoy sends with include_peer_certificate: true —
// verified again against the bundles, cached per certificate), or a bearer
// JWT-SVID in the authorization header. source.principal alone is not
// enough: it carries no task claims and is refused. The action is
// {http, method, path without query}, accepted only in canonical form
// (enable Envoy's normalize_path and merge_slashes so that clients'
// paths arrive canonical); requests to one of MCPPaths must carry one MCP
// JSON-RPC message in the body (with_request_body), decided as {mcp,
// method, tool}. Allowed requests go upstream with the x-agentid-* identity
// headers (overwriting incoming ones, and removing any other incoming
// x-agentid-* header); refused ones get 401/403/400/413/414/503 with the
// reason.
type ExtAuthz struct {
	authv3.UnimplementedAuthorizationServer
	V        *Verifier
	MCPPaths []string
}

// Register adds the Authorization service to s.
func (e *ExtAuthz) Register(s *grpc.Server) { authv3.RegisterAuthorizationServer(s, e) }

// Check implements authv3.AuthorizationServer.
func (e *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	if httpReq == nil {
		return deniedResponse(typev3.StatusCode_BadRequest, code.Code_INVALID_ARGUMENT, "bad_request: no HTTP request attributes"), nil
	}
	headers := httpReq.GetHeaders()
	q := Query{Frontend: FrontendExtAuthz, Caller: callerID(ctx),
		Action: Action{Kind: policies.KindHTTP, Method: httpReq.GetMethod(), Path: stripQuery(httpReq.GetPath())}}
	if n := headerBytes(headers); n > MaxHeaderBytes {
		q.Invalid = &InputError{What: "request headers", Detail: fmt.Sprintf("%d bytes exceed %d", n, MaxHeaderBytes), TooLarge: true}
		res := e.V.Decide(ctx, &q)
		return deniedResponse(typev3.StatusCode_RequestHeaderFieldsTooLarge, code.Code_INVALID_ARGUMENT, res.Message()), nil
	}
	q.Credential = extAuthzCredential(req.GetAttributes().GetSource(), headers)
	q.Request = Request{Headers: headerMap(headers), Source: sourceAddr(req.GetAttributes().GetSource())}
	if q.Action.Method == "POST" && isMCPPath(e.MCPPaths, q.Action.Path) {
		q.MCP = true
		q.Body = httpReq.GetRawBody()
		if len(q.Body) == 0 {
			q.Body = []byte(httpReq.GetBody())
		}
		if headers["x-envoy-auth-partial-body"] == "true" {
			q.Body = make([]byte, MaxMCPBody+1) // truncated by Envoy: too large to decide
		}
	}
	res := e.V.Decide(ctx, &q)
	switch res.Outcome {
	case Allowed:
		return okResponse(&res.Peer, res.Decision, headers), nil
	case Unauthenticated:
		return deniedResponse(typev3.StatusCode_Unauthorized, code.Code_UNAUTHENTICATED, res.Message()), nil
	case Forbidden:
		return deniedResponse(typev3.StatusCode_Forbidden, code.Code_PERMISSION_DENIED, res.Message()), nil
	case Unavailable:
		return deniedResponse(typev3.StatusCode_ServiceUnavailable, code.Code_UNAVAILABLE, res.Message()), nil
	}
	return deniedResponse(typev3.StatusCode(res.HTTPStatus()), code.Code_INVALID_ARGUMENT, res.Message()), nil
}

func extAuthzCredential(src *authv3.AttributeContext_Peer, headers map[string]string) Credential {
	if cert := src.GetCertificate(); cert != "" {
		return Credential{Kind: CredentialPEM, Value: cert}
	}
	if h, ok := headers["authorization"]; ok {
		if c := bearerCredential([]string{h}); c.Kind != CredentialNone {
			return c
		}
	}
	if src.GetPrincipal() != "" {
		return Credential{Kind: CredentialMalformed, Value: "only source.principal was sent: enable include_peer_certificate in the ext_authz filter so the task claims can be read"}
	}
	return Credential{}
}

// callerID is the SPIFFE ID of the mTLS client of a gRPC call (Envoy), or "".
func callerID(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	id, err := x509svid.IDFromCert(ti.State.PeerCertificates[0])
	if err != nil {
		return ""
	}
	return id.String()
}

// okResponse lets the request through with the identity headers. They are
// set with OVERWRITE_IF_EXISTS_OR_ADD, and only the other incoming
// x-agentid-* headers are removed: Envoy applies removals after the
// header mutations, so listing a header both ways would remove it.
func okResponse(p *Peer, d Decision, incoming map[string]string) *authv3.CheckResponse {
	// The header options in two arrays rather than twelve allocations.
	var opts [7]corev3.HeaderValueOption
	var vals [7]corev3.HeaderValue
	ok := &authv3.OkHttpResponse{Headers: make([]*corev3.HeaderValueOption, 0, len(opts))}
	identityHeaders(p, d, func(k, v string) { // in key order
		i := len(ok.Headers)
		vals[i].Key, vals[i].Value = k, v
		opts[i].Header, opts[i].AppendAction = &vals[i], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ok.Headers = append(ok.Headers, &opts[i])
	})
	for k := range incoming {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, HeaderPrefix) && !slices.ContainsFunc(ok.Headers, func(h *corev3.HeaderValueOption) bool { return h.Header.Key == lk }) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, k)
		}
	}
	slices.Sort(ok.HeadersToRemove)
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
}

func deniedResponse(httpCode typev3.StatusCode, c code.Code, reason string) *authv3.CheckResponse {
	reason = headerSafe(reason)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c), Message: reason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpCode},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: HeaderDenyReason, Value: reason}}},
			Body:    reason + "\n",
		}},
	}
}

func headerBytes(h map[string]string) int {
	n := 0
	for k, v := range h {
		n += len(k) + len(v)
	}
	return n
}

// headerMap converts Envoy's header map for the policy, in two allocations
// (Envoy sends header names in lower case already).
func headerMap(h map[string]string) map[string][]string {
	out := make(map[string][]string, len(h))
	vals := make([]string, len(h))
	i := 0
	for k, v := range h {
		vals[i] = v
		if !isLower(k) {
			k = strings.ToLower(k)
		}
		out[k] = vals[i : i+1 : i+1]
		i++
	}
	return out
}

func isLower(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

func sourceAddr(src *authv3.AttributeContext_Peer) netip.AddrPort {
	sa := src.GetAddress().GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}
	}
	addr, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(addr, uint16(sa.GetPortValue()))
}
