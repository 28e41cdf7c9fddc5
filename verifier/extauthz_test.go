package verifier_test

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// mcpPolicy adds MCP: the "search" tool is allowed for kb:read holders.
var mcpPolicy = verifier.PolicyFunc(func(in *policies.Input) policies.Decision {
	if in.Action.Kind == "mcp" && in.Action.Name == "search" && in.Peer.Claims != nil && in.Peer.Claims.HasScope("kb:read") {
		return policies.Decision{Allow: true, Rules: []policies.RuleRef{{Name: "mcp-search", File: "mcp.hcl", Line: 1}}}
	}
	return scopePolicy(in)
})

// startExtAuthz serves the policy mcpPolicy over ext_authz: on the server
// ExtAuthz.NewServer makes (wire), or on a plain gRPC server with the
// generated service (Register).
func startExtAuthz(t *testing.T, wire bool) (authv3.AuthorizationClient, *grpc.ClientConn, *testca.CA) {
	t.Helper()
	ca := testca.New(t, td, time.Now())
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}),
		Policy: mcpPolicy,
	}
	e := &verifier.ExtAuthz{V: v, MCPPaths: []string{"/mcp"}}
	srv := e.NewServer()
	if !wire {
		srv = grpc.NewServer()
		e.Register(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn), conn, ca
}

func checkReq(cert, method, path string, headers map[string]string, body string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Certificate: cert,
			Address:     &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}},
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: headers, Body: body}},
	}}
}

func TestExtAuthzCheck(t *testing.T) {
	t.Run("NewServer", func(t *testing.T) { testExtAuthzCheck(t, true) })
	t.Run("Register", func(t *testing.T) { testExtAuthzCheck(t, false) })
}

func testExtAuthzCheck(t *testing.T, wire bool) {
	client, conn, ca := startExtAuthz(t, wire)
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	certPEM, _ := testca.SVIDPEM(t, ca.CreateX509SVID(taskID, ext(t, c)))
	cert := url.PathEscape(string(certPEM))
	forged, _ := testca.SVIDPEM(t, testca.New(t, td, time.Now()).CreateX509SVID(taskID, ext(t, c)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		code   code.Code
		detail string
	}{
		{"allowed", checkReq(cert, "GET", "/kb/doc-1?x=1", map[string]string{"x-agentid-agent": "admin"}, ""), code.Code_OK, ""},
		{"denied by scope", checkReq(cert, "POST", "/tickets", nil, ""), code.Code_PERMISSION_DENIED, "no rule allows POST /tickets"},
		{"MCP tool allowed", checkReq(cert, "POST", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}`), code.Code_OK, ""},
		{"MCP tool denied", checkReq(cert, "POST", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all"}}`), code.Code_PERMISSION_DENIED, ""},
		{"forged certificate", checkReq(url.PathEscape(string(forged)), "GET", "/kb/doc-1", nil, ""), code.Code_UNAUTHENTICATED, "untrusted"},
		{"principal only", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:  &authv3.AttributeContext_Peer{Principal: taskID.String()},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/kb/x"}}}}, code.Code_UNAUTHENTICATED, "include_peer_certificate"},
		{"garbage certificate", checkReq("%%%garbage", "GET", "/kb/doc-1", nil, ""), code.Code_UNAUTHENTICATED, "bad_credential"},
		{"oversized headers", checkReq(cert, "GET", "/kb/doc-1", map[string]string{"x-big": strings.Repeat("a", verifier.MaxHeaderBytes)}, ""), code.Code_INVALID_ARGUMENT, "exceed"},
		{"empty request", &authv3.CheckRequest{}, code.Code_INVALID_ARGUMENT, "no HTTP request attributes"},
		{"JWT bearer", checkReq("", "GET", "/kb/doc-2", map[string]string{"authorization": "Bearer " + ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims())}, ""), code.Code_OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := code.Code(resp.GetStatus().GetCode()); got != tc.code || !strings.Contains(resp.GetStatus().GetMessage(), tc.detail) {
				t.Fatalf("status %v %q, want %v containing %q", got, resp.GetStatus().GetMessage(), tc.code, tc.detail)
			}
			if tc.code != code.Code_OK {
				if resp.GetDeniedResponse() == nil {
					t.Fatal("no denied response")
				}
				return
			}
			ok := resp.GetOkResponse()
			hdr := map[string]string{}
			for _, h := range ok.GetHeaders() {
				hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if hdr[verifier.HeaderSPIFFEID] != taskID.String() || hdr[verifier.HeaderAgent] != "researcher" || hdr[verifier.HeaderClaims] != "" {
				t.Fatalf("identity headers %v", hdr)
			}
			if tc.name == "allowed" {
				if got := applyAsEnvoy(map[string]string{"x-agentid-agent": "admin"}, ok); got["x-agentid-agent"] != "researcher" {
					t.Fatalf("forged identity header reaches the upstream: %v", got)
				}
			}
		})
	}

	// Garbage bytes on the wire: the call fails, the server keeps serving.
	err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", &[]byte{0xff, 0xff, 0xff, 0x07, 0x01}, new([]byte), grpc.ForceCodecV2(rawCodec{}))
	if err == nil || status.Code(err) == 0 {
		t.Fatalf("garbage request: %v", err)
	}
	if resp, err := client.Check(ctx, tests[0].req); err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("after garbage: %v %v", resp, err)
	}
}

// rawCodec sends bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestExtAuthzHeadersAndSharedResponses runs a compiled policy whose rules
// read request.headers behind ext_authz (Envoy's single-valued header map,
// decided without converting it), and checks that the OK responses, shared
// per peer and deciding rule, name the rule that decided each request and
// that a response removing a forged header leaves the shared one intact.
func TestExtAuthzHeadersAndSharedResponses(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	set, diags := policies.LoadFiles([]policies.File{{Name: "h.hcl", Src: []byte(`
rule "ticket" {
  effect = "allow"
  action {
    http {
      paths = ["/tickets/**"]
    }
  }
  condition = lookup(request.headers, "x-ticket", "") == "CHG-1"
}
rule "kb" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	e := &verifier.ExtAuthz{V: &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: set}}
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	certPEM, _ := testca.SVIDPEM(t, ca.CreateX509SVID(taskID, ext(t, c)))
	cert := url.PathEscape(string(certPEM))
	check := func(path string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		resp, err := e.Check(context.Background(), checkReq(cert, "GET", path, headers, ""))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	headers := func(resp *authv3.CheckResponse) map[string]string {
		hdr := map[string]string{}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return hdr
	}
	for i := range 3 { // the first builds the responses, the others share them
		if resp := check("/tickets/1", map[string]string{"x-ticket": "CHG-1"}); resp.GetOkResponse() == nil || headers(resp)[verifier.HeaderRule] != "ticket (h.hcl:2)" {
			t.Fatalf("round %d: ticket with header: %v", i, resp)
		}
		if resp := check("/tickets/1", map[string]string{"X-Ticket": "CHG-1"}); resp.GetOkResponse() == nil {
			t.Fatalf("round %d: header name in another case: %v", i, resp)
		}
		if resp := check("/tickets/1", map[string]string{"x-ticket": "CHG-2"}); code.Code(resp.GetStatus().GetCode()) != code.Code_PERMISSION_DENIED {
			t.Fatalf("round %d: ticket with another header value: %v", i, resp)
		}
		if resp := check("/tickets/1", nil); code.Code(resp.GetStatus().GetCode()) != code.Code_PERMISSION_DENIED {
			t.Fatalf("round %d: ticket without header: %v", i, resp)
		}
		resp := check("/kb/1", nil)
		if hdr := headers(resp); hdr[verifier.HeaderRule] != "kb (h.hcl:11)" || hdr[verifier.HeaderSPIFFEID] != taskID.String() || hdr[verifier.HeaderTask] != "T-42" {
			t.Fatalf("round %d: kb: %v", i, hdr)
		}
		if got, want := resp.GetOkResponse().GetHeadersToRemove(), []string{verifier.HeaderClaims, verifier.HeaderReceipt}; !slices.Equal(got, want) {
			t.Fatalf("round %d: headers to remove without forged headers: %q, want the identity headers not set %q", i, got, want)
		}
		var keys []string
		for _, h := range resp.GetOkResponse().GetHeaders() {
			keys = append(keys, h.GetHeader().GetKey())
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Fatalf("round %d: %s is not overwritten: %v", i, h.GetHeader().GetKey(), h.GetAppendAction())
			}
		}
		if want := []string{verifier.HeaderAgent, verifier.HeaderPrincipal, verifier.HeaderRule, verifier.HeaderSPIFFEID, verifier.HeaderTask}; !slices.Equal(keys, want) { // DefaultHeaders
			t.Fatalf("round %d: header keys %q, want %q", i, keys, want)
		}
		if again := check("/kb/2", nil); again != resp {
			t.Fatalf("round %d: the OK response of the same peer and rule is built again", i)
		}
		forged := check("/kb/1", map[string]string{"x-agentid-task": "T-1", "X-Agentid-Other": "x"})
		if got := forged.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, []string{verifier.HeaderClaims, "x-agentid-other", verifier.HeaderReceipt}) {
			t.Fatalf("round %d: headers to remove %q", i, got)
		}
		if got := applyAsEnvoy(map[string]string{"x-agentid-task": "T-1", "x-agentid-other": "x"}, forged.GetOkResponse()); got["x-agentid-task"] != "T-42" || got["x-agentid-other"] != "" {
			t.Fatalf("round %d: upstream headers %v", i, got)
		}
	}
}

// TestExtAuthzRawHeaderMap: with encode_raw_headers Envoy sends the
// request headers in header_map (raw_value, one entry per header line)
// instead of headers. The verifier reads them there too: a JWT-SVID in
// authorization authenticates, the policy sees the headers, and a forged
// x-agentid-* header is removed — before, header_map was ignored, so the
// request looked headerless and the forged header reached the upstream.
func TestExtAuthzRawHeaderMap(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	set, diags := policies.LoadFiles([]policies.File{{Name: "h.hcl", Src: []byte(`
rule "ticket" {
  effect = "allow"
  action {
    http {
      paths = ["/tickets/**"]
    }
  }
  condition = lookup(request.headers, "x-ticket", "") == "CHG-1,CHG-2"
}
`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	e := &verifier.ExtAuthz{V: &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}), Policy: set}}
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	jwt := ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims())
	raw := func(kv ...string) *corev3.HeaderMap {
		m := &corev3.HeaderMap{}
		for i := 0; i < len(kv); i += 2 {
			m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return m
	}
	check := func(hm *corev3.HeaderMap) *authv3.CheckResponse {
		t.Helper()
		req := checkReq("", "GET", "/tickets/1", nil, "")
		req.Attributes.Request.Http.HeaderMap = hm
		resp, err := e.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := check(raw("authorization", "Bearer "+jwt, "x-ticket", "CHG-1", "x-ticket", "CHG-2", "x-agentid-other", "forged"))
	if resp.GetOkResponse() == nil {
		t.Fatalf("raw headers: %v", resp)
	}
	if got := applyAsEnvoy(map[string]string{"x-agentid-other": "forged"}, resp.GetOkResponse()); got["x-agentid-other"] != "" || got[verifier.HeaderTask] != "T-42" {
		t.Fatalf("upstream headers %v", got)
	}
	if resp := check(raw("authorization", "Bearer "+jwt, "x-ticket", "CHG-1")); code.Code(resp.GetStatus().GetCode()) != code.Code_PERMISSION_DENIED {
		t.Fatalf("one of two header lines: %v", resp)
	}
	if resp := check(raw("x-ticket", "CHG-1", "x-ticket", "CHG-2")); code.Code(resp.GetStatus().GetCode()) != code.Code_UNAUTHENTICATED {
		t.Fatalf("no credential: %v", resp)
	}
	// Both forms at once cannot disagree: refused.
	req := checkReq("", "GET", "/tickets/1", map[string]string{"authorization": "Bearer " + jwt}, "")
	req.Attributes.Request.Http.HeaderMap = raw("authorization", "Bearer x")
	if resp, _ := e.Check(context.Background(), req); code.Code(resp.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT {
		t.Fatalf("headers and header_map: %v", resp)
	}
}

// TestExtAuthzHeaderMapTooLarge: a header_map over MaxHeaderBytes is
// refused with 431 like oversized headers.
func TestExtAuthzHeaderMapTooLarge(t *testing.T) {
	e := &verifier.ExtAuthz{V: &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{}), Policy: mcpPolicy}}
	hm := &corev3.HeaderMap{}
	for range verifier.MaxHeaderBytes / 100 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "x-big", RawValue: []byte(strings.Repeat("a", 200))})
	}
	req := checkReq("", "GET", "/kb/1", nil, "")
	req.Attributes.Request.Http.HeaderMap = hm
	resp, _ := e.Check(context.Background(), req)
	if resp.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_RequestHeaderFieldsTooLarge {
		t.Fatalf("%v", resp)
	}
}
