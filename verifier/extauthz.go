package verifier

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/agentid/agentid/policies"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

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
// method, tool}; a form or JSON POST's body, when Envoy sends it, is
// refused with a "_method" field (Rails, Laravel), and when Envoy marks it
// partial. Allowed requests go upstream with the x-agentid-* identity
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

// Check implements authv3.AuthorizationServer. An OK response may be
// shared with other checks of the same peer (it is only serialized): do
// not modify it.
func (e *ExtAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	c := getPending()
	inputFromProto(req, &c.ext)
	resp, _ := e.check(ctx, &c.ext, c)
	c.release()
	return resp, nil
}

// check decides the request in; an OK response shared per peer and rule
// also comes encoded (wire), for the server NewServer makes.
func (e *ExtAuthz) check(ctx context.Context, in *checkInput, c *pending) (resp *authv3.CheckResponse, wire []byte) {
	if !in.hasHTTP {
		return deniedResponse(typev3.StatusCode_BadRequest, code.Code_INVALID_ARGUMENT, "bad_request: no HTTP request attributes"), nil
	}
	headers := in.headers
	q, r := &c.q, &c.r
	q.Frontend, q.Caller = FrontendExtAuthz, callerID(ctx)
	q.Action = Action{Kind: policies.KindHTTP, Method: in.method, Path: stripQuery(in.path)}
	if n := headerBytes(headers); n > MaxHeaderBytes {
		return e.invalid(q, r, &InputError{What: "request headers", Detail: fmt.Sprintf("%d bytes exceed %d", n, MaxHeaderBytes), TooLarge: true}, typev3.StatusCode_RequestHeaderFieldsTooLarge), nil
	}
	if _, query, ok := strings.Cut(in.path, "?"); ok && in.bad == nil && methodOverrideParam(query) {
		in.bad = badInput("method", "a \"_method\" query parameter is refused: frameworks that honour it run another method than the one decided (send the method itself)")
	}
	if in.bad != nil {
		status := typev3.StatusCode_BadRequest
		if in.bad.TooLarge {
			status = typev3.StatusCode_RequestHeaderFieldsTooLarge
		}
		return e.invalid(q, r, in.bad, status), nil
	}
	q.Credential = extAuthzCredential(in.certificate, in.principal, headers)
	q.Request.Source = in.source
	if q.Action.Method == "POST" && isMCPPath(e.MCPPaths, q.Action.Path) {
		q.MCP = true
		q.Request.Headers = headerMap(headers) // ParseMCP reads them
		q.Body = in.body
		if headers["x-envoy-auth-partial-body"] == "true" {
			q.Body = make([]byte, MaxMCPBody+1) // truncated by Envoy: too large to decide
		}
	} else {
		q.Request.HeaderMap = headers // the policy reads them as they are
		q.GRPC = q.Action.Method == "POST" && isGRPCContentType(headers["content-type"])
		if q.Action.Method == "POST" && !q.GRPC && formKindOf(headers["content-type"]) != formNone {
			// A form body, whose "_method" Rails and Laravel run: checked
			// when Envoy sends it (with_request_body), refused when cut.
			q.Form, q.Body = true, in.body
			switch {
			case headers["x-envoy-auth-partial-body"] == "true":
				q.Invalid = &InputError{What: formBodyWhat, Detail: "Envoy sent only part of it (x-envoy-auth-partial-body): a form or JSON POST is decided on its whole body (with_request_body: allow_partial_message false, max_request_bytes at least the largest body)", TooLarge: true}
			case len(in.body) > e.V.maxFormBody():
				q.Invalid = tooLarge(formBodyWhat, len(in.body), e.V.maxFormBody())
			}
		}
	}
	if e.V.Signatures != nil {
		q.Signed = extAuthzSigned(in)
	}
	c.decide(e.V)
	switch r.Outcome {
	case Allowed:
		return okResponse(&r.Peer, &r.Decision, e.V.Headers.orDefault(), headers)
	case Unauthenticated:
		return deniedResponse(typev3.StatusCode_Unauthorized, code.Code_UNAUTHENTICATED, r.Message()), nil
	case Forbidden:
		return deniedResponse(typev3.StatusCode_Forbidden, code.Code_PERMISSION_DENIED, r.Message()), nil
	case Unavailable:
		return deniedResponse(typev3.StatusCode_ServiceUnavailable, code.Code_UNAVAILABLE, r.Message()), nil
	}
	return deniedResponse(typev3.StatusCode(r.HTTPStatus()), code.Code_INVALID_ARGUMENT, r.Message()), nil
}

// invalid decides (refuses and audits) a request that cannot be read.
func (e *ExtAuthz) invalid(q *Query, r *Result, bad *InputError, httpCode typev3.StatusCode) *authv3.CheckResponse {
	q.Invalid = bad
	e.V.decideInto(q, r, nil)
	return deniedResponse(httpCode, code.Code_INVALID_ARGUMENT, r.Message())
}

func extAuthzCredential(cert, principal string, headers map[string]string) Credential {
	if cert != "" {
		return Credential{Kind: CredentialPEM, Value: cert}
	}
	if h, ok := headers["authorization"]; ok {
		if c := bearerCredential([]string{h}); c.Kind != CredentialNone {
			return c
		}
	}
	if principal != "" {
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
// set with OVERWRITE_IF_EXISTS_OR_ADD, and every other identity header is
// removed — whether or not Envoy showed it to the verifier (its
// allowed_headers may hide a forged one) — as are the other incoming
// x-agentid-* headers: Envoy applies removals after the header mutations,
// so listing a header both ways would remove it.
//
// Without a receipt or other incoming x-agentid-* headers (the common
// case) the response is the one built for this peer and deciding rule the
// first time, shared: responses are only serialized, and a peer is
// immutable.
func okResponse(p *Peer, d *Decision, set HeaderSet, incoming map[string]string) (*authv3.CheckResponse, []byte) {
	oh := p.hdrs.okHeaders(p, ruleHeader(d), set)
	ok := oh.resp.GetOkResponse()
	headers, remove, changed := ok.Headers, ok.HeadersToRemove, false
	if !d.Receipt.IsZero() {
		// A receipt is the decision's own: the response is built for it.
		headers = withReceipt(headers, d.Receipt.String())
		remove = slices.DeleteFunc(slices.Clone(remove), func(k string) bool { return k == HeaderReceipt })
		changed = true
	}
	for k := range incoming {
		if len(k) < len(HeaderPrefix) || !strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) {
			continue
		}
		lk := strings.ToLower(k)
		if !slices.Contains(remove, lk) && !slices.ContainsFunc(headers, func(h *corev3.HeaderValueOption) bool { return h.Header.Key == lk }) {
			remove, changed = append(slices.Clip(remove), lk), true
		}
	}
	if !changed {
		return oh.resp, oh.wire
	}
	slices.Sort(remove)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: headers, HeadersToRemove: remove,
		}},
	}, nil
}

// identityHeaderNames are every identity header, sorted.
var identityHeaderNames = []string{HeaderAgent, HeaderClaims, HeaderPrincipal, HeaderReceipt, HeaderRule, HeaderSPIFFEID, HeaderTask}

// unsetIdentityHeaders are the identity headers opts does not set, sorted.
func unsetIdentityHeaders(opts []*corev3.HeaderValueOption) []string {
	var out []string
	for _, k := range identityHeaderNames {
		if !slices.ContainsFunc(opts, func(o *corev3.HeaderValueOption) bool { return o.Header.Key == k }) {
			out = append(out, k)
		}
	}
	return out
}

// withReceipt is the shared header options hs with x-agentid-receipt
// added in key order (a new slice; hs is not changed).
func withReceipt(hs []*corev3.HeaderValueOption, ref string) []*corev3.HeaderValueOption {
	rh := headerOption(HeaderReceipt, ref)
	out := make([]*corev3.HeaderValueOption, 0, len(hs)+1)
	placed := false
	for _, h := range hs {
		if !placed && h.Header.Key > HeaderReceipt {
			out, placed = append(out, rh), true
		}
		out = append(out, h)
	}
	if !placed {
		out = append(out, rh)
	}
	return out
}

// peerHeaders keeps a peer's OK responses for ext_authz, one per deciding
// rule for the last few rules, and the identity header options they
// share; copies of a Peer (the cache hands out copies) share it.
type peerHeaders struct {
	base atomic.Pointer[baseHeaders] // without the rule
	ok   atomic.Pointer[[]*okHeaders]
}

// baseHeaders are a peer's identity header options of one HeaderSet,
// without the rule.
type baseHeaders struct {
	set  HeaderSet
	opts []*corev3.HeaderValueOption
}

// maxOKRules bounds the responses kept per peer.
const maxOKRules = 4

type okHeaders struct {
	rule string
	set  HeaderSet
	resp *authv3.CheckResponse
	wire []byte // resp encoded
}

// okHeaders returns the OK response for p and rule, built once (h may
// be nil: a Peer not made by an Authenticator or NewPeer). Concurrent
// first checks may each build one; the last stored is kept, all are right.
func (h *peerHeaders) okHeaders(p *Peer, rule string, set HeaderSet) *okHeaders {
	var list []*okHeaders
	var base []*corev3.HeaderValueOption
	if h != nil {
		if l := h.ok.Load(); l != nil {
			list = *l
			for _, oh := range list {
				if oh.rule == rule && oh.set == set {
					return oh
				}
			}
		}
		if b := h.base.Load(); b != nil && b.set == set {
			base = b.opts
		}
	}
	if base == nil {
		base = headerOptions(p, "", set)
		if h != nil {
			h.base.Store(&baseHeaders{set: set, opts: base})
		}
	}
	opts := base
	if rule != "" && set&SendRule != 0 { // inserted in key order
		i := slices.IndexFunc(base, func(o *corev3.HeaderValueOption) bool { return o.Header.Key > HeaderRule })
		if i < 0 {
			i = len(base)
		}
		opts = slices.Insert(slices.Clip(base), i, headerOption(HeaderRule, rule))
	}
	oh := &okHeaders{rule: rule, set: set, resp: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: opts, HeadersToRemove: unsetIdentityHeaders(opts)}},
	}}
	oh.wire, _ = proto.MarshalOptions{Deterministic: true}.Marshal(oh.resp) // cannot fail: no required fields, valid UTF-8 (identityHeaders)
	if h != nil {
		next := append([]*okHeaders{oh}, list[:min(len(list), maxOKRules-1)]...)
		h.ok.Store(&next)
	}
	return oh
}

// headerOptions are the identity headers of p with rule as options that
// overwrite incoming headers of the same name, in key order.
func headerOptions(p *Peer, rule string, set HeaderSet) []*corev3.HeaderValueOption {
	opts := make([]*corev3.HeaderValueOption, 0, 6)
	identityHeaders(p, rule, "", set, func(k, v string) { opts = append(opts, headerOption(k, v)) })
	return slices.Clip(opts)
}

func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
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
