package verifier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
// (envoy.service.auth.v3.Authorization/Check) in front of a Verifier.
//
// The peer is identified from, in order: source.certificate (the
// URL-encoded PEM chain Envoy sends with include_peer_certificate: true —
// verified again against the bundles, cached per certificate), or a bearer
// JWT-SVID in the authorization header. source.principal alone is not
// enough: it carries no task claims and is refused. The action is
// {http, method, path without query}; requests to one of MCPPaths whose
// body (with_request_body) is an MCP JSON-RPC call become {mcp, tool}.
// Allowed requests go upstream with the x-agentid-* identity headers
// (incoming ones are removed); denied ones get 403 (401 unauthenticated)
// with the reason.
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
		return deniedResponse(typev3.StatusCode_BadRequest, code.Code_INVALID_ARGUMENT, "no HTTP request attributes"), nil
	}
	action := e.action(httpReq)
	if n := headerBytes(httpReq.GetHeaders()); n > MaxHeaderBytes {
		d := e.V.Denied(action, fmt.Errorf("request headers of %d bytes exceed %d", n, MaxHeaderBytes))
		return deniedResponse(typev3.StatusCode_RequestHeaderFieldsTooLarge, code.Code_INVALID_ARGUMENT, d.Reason), nil
	}
	p, err := e.peer(req.GetAttributes().GetSource(), httpReq.GetHeaders())
	if err != nil {
		d := e.V.Denied(action, err)
		return deniedResponse(typev3.StatusCode_Unauthorized, code.Code_UNAUTHENTICATED, d.Reason), nil
	}
	d := e.V.Check(ctx, &p, action, Request{Headers: headerMap(httpReq.GetHeaders()), Source: sourceAddr(req.GetAttributes().GetSource())})
	if !d.Allow {
		return deniedResponse(typev3.StatusCode_Forbidden, code.Code_PERMISSION_DENIED, d.Explanation()), nil
	}
	return okResponse(&p, d, httpReq.GetHeaders()), nil
}

func (e *ExtAuthz) peer(src *authv3.AttributeContext_Peer, headers map[string]string) (Peer, error) {
	if cert := src.GetCertificate(); cert != "" {
		return e.V.Auth.PEM(cert)
	}
	if tok, ok := bearer(headers["authorization"]); ok {
		return e.V.Auth.JWT(tok)
	}
	if src.GetPrincipal() != "" {
		return Peer{}, deny(ReasonNoCredential, errors.New("only source.principal was sent: enable include_peer_certificate in the ext_authz filter so the task claims can be read"))
	}
	return Peer{}, deny(ReasonNoCredential, errors.New("no peer certificate or bearer JWT-SVID in the check request"))
}

func (e *ExtAuthz) action(h *authv3.AttributeContext_HttpRequest) Action {
	path := stripQuery(h.GetPath())
	if h.GetMethod() == "POST" && slices.Contains(e.MCPPaths, path) {
		body := h.GetRawBody()
		if len(body) == 0 {
			body = []byte(h.GetBody())
		}
		if a, ok := MCPAction(body); ok {
			a.Path = path
			return a
		}
	}
	return Action{Kind: "http", Method: h.GetMethod(), Path: path}
}

func okResponse(p *Peer, d Decision, incoming map[string]string) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{}
	for k := range incoming {
		if strings.HasPrefix(strings.ToLower(k), HeaderPrefix) {
			ok.HeadersToRemove = append(ok.HeadersToRemove, k)
		}
	}
	slices.Sort(ok.HeadersToRemove)
	ok.Headers = make([]*corev3.HeaderValueOption, 0, 6)
	identityHeaders(p, d, func(k, v string) { // in key order
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	})
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

func headerMap(h map[string]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = []string{v}
	}
	return out
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
