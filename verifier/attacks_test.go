package verifier_test

// Regression tests for the holes the security review of the verifier
// found (issue 10). Each drives a real front-end the way an attacker
// would; each failed on the code before the decision pipeline.

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// attackPolicy is the operator's policy of the review: the knowledge base
// is open to kb:read holders except its admin part and deletes; MCP allows
// search_docs and tools/list, never shell.
const attackPolicy = `
rule "kb" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      paths = ["/kb/**"]
    }
  }
}

rule "kb-admin" {
  effect = "deny"
  reason = "the admin area is for operators"
  action {
    http {
      paths = ["/kb/admin/**"]
    }
  }
}

rule "no-delete" {
  effect = "deny"
  reason = "nothing is deleted by agents"
  action {
    http {
      methods = ["DELETE"]
    }
  }
}

rule "mcp" {
  effect = "allow"
  action {
    mcp {
      tools = ["search_docs"]
    }
  }
}

rule "mcp-shell" {
  effect = "deny"
  reason = "no shell"
  action {
    mcp {
      tools = ["shell"]
    }
  }
}
`

func loadPolicy(t testing.TB, src string) *policies.Set {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return set
}

type attackEnv struct {
	ca      *testca.CA
	v       *verifier.Verifier
	certPEM string // the task's certificate, URL-encoded as Envoy sends it
	jwt     string
}

func newAttackEnv(t testing.TB) *attackEnv {
	t.Helper()
	ca := testca.New(t, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	pem, _ := testca.SVIDPEM(t, ca.CreateX509SVID(taskID, ext(t, c)))
	return &attackEnv{
		ca: ca,
		v: &verifier.Verifier{
			Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}),
			Policy: loadPolicy(t, attackPolicy),
		},
		certPEM: url.PathEscape(string(pem)),
		jwt:     ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()),
	}
}

func (e *attackEnv) extAuthz(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := (&verifier.ExtAuthz{V: e.v, MCPPaths: []string{"/mcp"}}).Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Hole 1: a public certificate must never work as a bearer token.
func TestAttackCertificateAsBearer(t *testing.T) {
	e := newAttackEnv(t)
	// Someone asks about the task with its (public) certificate: cached.
	if resp := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", nil, "")); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("certificate check: %v", resp.GetStatus())
	}
	// The same bytes as a bearer token, without the key.
	resp := e.extAuthz(t, checkReq("", "GET", "/kb/doc", map[string]string{"authorization": "Bearer " + e.certPEM}, ""))
	if got := code.Code(resp.GetStatus().GetCode()); got != code.Code_UNAUTHENTICATED || !strings.Contains(resp.GetStatus().GetMessage(), "bad_credential") {
		t.Fatalf("certificate as bearer: %v %q, want UNAUTHENTICATED bad_credential", got, resp.GetStatus().GetMessage())
	}
	// And the library the same way.
	if _, err := e.v.Auth.PEM(e.certPEM); err != nil {
		t.Fatal(err)
	}
	_, err := e.v.Auth.JWT(e.certPEM)
	wantDeny(t, err, verifier.ReasonBadCredential, "")
}

// Hole 3: MCP envelopes that a case-sensitive server reads differently
// from encoding/json are refused, never decided as something else.
func TestAttackMCPSmuggling(t *testing.T) {
	e := newAttackEnv(t)
	tests := []struct{ name, body, want string }{
		{"case-variant name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell","Name":"search_docs"}}`, "bad_request"},
		{"duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell","name":"search_docs"}}`, "bad_request"},
		{"case-variant method", `{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"tools/list","params":{"name":"shell"}}`, "bad_request"},
		{"case-variant params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"},"Params":{"name":"search_docs"}}`, "bad_request"},
		{"duplicate in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"a","q":"b"}}}`, "bad_request"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"shell"}}]`, "bad_request"},
		{"not JSON-RPC", `{"hello":"world"}`, "bad_request"},
		{"trailing data", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}} {"jsonrpc":"2.0"}`, "bad_request"},
		{"unicode-folded params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"},"param\u017f":{"name":"shell"}}`, "bad_request"},
		{"unicode-folded arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"a"},"argument\u017f":{"q":"rm -rf"}}}`, "bad_request"},
		{"unicode-folded key alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","argument\u017f":{"q":"rm -rf"}}}`, "bad_request"},
		{"capitalised params alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"shell"}}`, "bad_request"},
		{"capitalised arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","Arguments":{"q":"x"}}}`, "bad_request"},
		{"oversize", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"` + strings.Repeat("a", verifier.MaxMCPBody) + `"}}}`, "too_large"},
		// JSON.parse keeps a lone surrogate, encoding/json reads U+FFFD
		{"lone surrogate in the name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs\udc00"}}`, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", nil, tc.body))
			if got := code.Code(resp.GetStatus().GetCode()); got == code.Code_OK || !strings.Contains(resp.GetStatus().GetMessage(), tc.want) {
				t.Fatalf("ext_authz: %v %q, want a refusal naming %q", got, resp.GetStatus().GetMessage(), tc.want)
			}
		})
	}
	// The allowed call itself still passes.
	if resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}}`)); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("allowed call: %v", resp.GetStatus())
	}
	// Below the MCP path ("/mcp/", "/mcp;v=1") is MCP too.
	for _, p := range []string{"/mcp/", "/mcp;v=1"} {
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", p, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell","Name":"search_docs"}}`))
		if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
			t.Errorf("POST %s decided as plain HTTP", p)
		}
	}
	// 2026-07-28: Mcp-Method / Mcp-Name must agree with the body.
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}`
	resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "search_docs"}, call))
	if got := code.Code(resp.GetStatus().GetCode()); got != code.Code_INVALID_ARGUMENT {
		t.Fatalf("Mcp-Name disagreeing with the body: %v %q", got, resp.GetStatus().GetMessage())
	}
}

// upstreams a request may reach behind the proxy: a net/http handler and
// an http.FileServer with an admin file.
func proxyTo(t *testing.T, e *attackEnv, upstream http.Handler) (*http.Client, string, *int) {
	t.Helper()
	hits := new(int)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		upstream.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: verifier.NewProxy(e.v, u, []string{"/mcp"}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(
		e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))}}
	return client, "https://" + l.Addr().String(), hits
}

func claimsUntil(t time.Time) svid.Claims {
	c := claims()
	c.Deadline = t.Truncate(time.Second).UTC()
	return c
}

// rawRequest sends target as the request-target exactly (Go's client
// would otherwise re-encode it).
func rawRequest(t *testing.T, client *http.Client, method, base, target, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = target
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Hole 4: the policy decides on the path the upstream serves.
func TestAttackPathConfusion(t *testing.T) {
	e := newAttackEnv(t)
	docs := t.TempDir()
	os.MkdirAll(filepath.Join(docs, "kb", "admin"), 0o755)
	os.MkdirAll(filepath.Join(docs, "kb", "x"), 0o755)
	os.WriteFile(filepath.Join(docs, "kb", "admin", "keys"), []byte("SECRET"), 0o644)
	os.WriteFile(filepath.Join(docs, "kb", "doc"), []byte("public"), 0o644)
	client, base, hits := proxyTo(t, e, http.FileServer(http.Dir(docs)))

	if st, body := rawRequest(t, client, "GET", base, "/kb/doc", ""); st != 200 || body != "public" {
		t.Fatalf("plain read: %d %q", st, body)
	}
	for _, target := range []string{"/kb/x/../admin/keys", "/kb/%61dmin/keys", "/kb//admin/keys", "/kb/./admin/keys", "/kb/%2e%2e/kb/admin/keys", "/kb/admin%2fkeys", "/kb/x/..%2fadmin/keys", "/kb/%5cadmin", "/kb/a%00",
		"/kb/x#/../admin/keys", "/kb/x/y#/../../admin/keys", "/kb/..;/kb/admin/keys", "/kb/x/.;/../admin/keys"} {
		before := *hits
		st, body := rawRequest(t, client, "GET", base, target, "")
		if st != http.StatusBadRequest && st != http.StatusForbidden {
			t.Errorf("proxy %s: %d %q, want 400 or 403", target, st, body)
		}
		if strings.Contains(body, "SECRET") || *hits != before {
			t.Errorf("proxy %s reached the upstream", target)
		}
	}

	// The middleware in front of the same file server.
	mw := e.v.Middleware(http.FileServer(http.Dir(docs)))
	for _, target := range []string{"/kb/x#/../admin/keys", "/kb/x/../admin/keys", "/kb/%61dmin/keys"} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = target
		r.URL, _ = url.ParseRequestURI(target)
		r.TLS = &tls.ConnectionState{PeerCertificates: e.ca.CreateX509SVID(taskID, ext(t, claimsUntil(time.Now().Add(time.Hour)))).Certificates}
		mw.ServeHTTP(rec, r)
		if rec.Code == 200 || strings.Contains(rec.Body.String(), "SECRET") {
			t.Errorf("middleware %s: %d %q", target, rec.Code, rec.Body)
		}
	}

	// ext_authz sees Envoy's :path as it came in.
	for _, target := range []string{"/kb/%61dmin/keys", "/kb/x/../admin/keys", "/kb//admin/keys", "/kb/admin%2Fkeys", "/kb/x#/../admin/keys", "/kb/..;/kb/admin/keys"} {
		resp := e.extAuthz(t, checkReq(e.certPEM, "GET", target, nil, ""))
		if got := code.Code(resp.GetStatus().GetCode()); got == code.Code_OK {
			t.Errorf("ext_authz %s allowed", target)
		}
	}
}

// Hole 5: a deny on DELETE is not dodged by "delete".
func TestAttackMethodCase(t *testing.T) {
	e := newAttackEnv(t)
	client, base, hits := proxyTo(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "deleted") }))
	for _, m := range []string{"delete", "Delete", "DELETE"} {
		st, body := rawRequest(t, client, m, base, "/kb/doc", "")
		if st == 200 || *hits != 0 {
			t.Errorf("proxy %s: %d %q reached the upstream", m, st, body)
		}
		resp := e.extAuthz(t, checkReq(e.certPEM, m, "/kb/doc", nil, ""))
		if got := code.Code(resp.GetStatus().GetCode()); got == code.Code_OK {
			t.Errorf("ext_authz %s allowed", m)
		}
	}
}

// Hole 7: identity headers reach the upstream as Envoy applies the OK
// response (header mutations first, then headers_to_remove).
func TestAttackIdentityHeadersBehindEnvoy(t *testing.T) {
	e := newAttackEnv(t)
	incoming := map[string]string{"x-agentid-spiffe-id": "spiffe://example.org/agent/admin/task/A", "x-agentid-task": "A", "x-agentid-admin": "1"}
	resp := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", incoming, ""))
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("check: %v", resp.GetStatus())
	}
	got := applyAsEnvoy(incoming, resp.GetOkResponse())
	if got[verifier.HeaderSPIFFEID] != taskID.String() || got[verifier.HeaderTask] != "T-42" || got["x-agentid-admin"] != "" {
		t.Fatalf("upstream headers %v", got)
	}
}

// applyAsEnvoy applies an ext_authz OK response to request headers in
// Envoy's order: headers (with their append action), then removals.
func applyAsEnvoy(in map[string]string, ok *authv3.OkHttpResponse) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		out[k] = v
	}
	for _, h := range ok.GetHeaders() {
		k, v := strings.ToLower(h.GetHeader().GetKey()), h.GetHeader().GetValue()
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			if out[k] != "" {
				v = out[k] + "," + v
			}
			out[k] = v
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if _, exists := out[k]; !exists {
				out[k] = v
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			out[k] = v
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if _, exists := out[k]; exists {
				out[k] = v
			}
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(out, strings.ToLower(k))
	}
	return out
}

// Hole 8: JWT refusals carry the documented reason.
func TestAttackJWTReasons(t *testing.T) {
	e := newAttackEnv(t)
	enc := base64.RawURLEncoding.EncodeToString
	none := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"`+taskID.String()+`","aud":["kb"],"exp":4102444800}`)) + "."
	_, err := e.v.Auth.JWT(none)
	wantDeny(t, err, verifier.ReasonUntrusted, "")

	noExp := e.ca.CreateJWTSVID(taskID, []string{"kb"}, map[string]any{"exp": nil})
	_, err = e.v.Auth.JWT(noExp)
	wantDeny(t, err, verifier.ReasonBadCredential, "exp")

	// go-jose reads keys case-sensitively: "EXP" is no exp.
	_, err = e.v.Auth.JWT(e.ca.CreateJWTSVID(taskID, []string{"kb"}, map[string]any{"exp": nil, "EXP": 4102444800}))
	wantDeny(t, err, verifier.ReasonBadCredential, "")
	_, err = e.v.Auth.JWT(e.ca.CreateJWTSVID(taskID, []string{"kb"}, map[string]any{"sub": "alice"}))
	wantDeny(t, err, verifier.ReasonBadCredential, "SPIFFE ID")
	_, err = e.v.Auth.JWT(e.ca.CreateJWTSVID(taskID, []string{"other"}, nil))
	wantDeny(t, err, verifier.ReasonWrongAudience, "")

	// An oversized bearer is a bad credential, not an absent one.
	huge := "Bearer " + strings.Repeat("a", verifier.MaxBearerLen+1)
	resp := e.extAuthz(t, checkReq("", "GET", "/kb/doc", map[string]string{"authorization": huge}, ""))
	if !strings.Contains(resp.GetStatus().GetMessage(), verifier.ReasonBadCredential) {
		t.Fatalf("ext_authz oversized bearer: %q", resp.GetStatus().GetMessage())
	}
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/kb/doc", nil)
	r.Header.Set("Authorization", huge)
	e.v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, r)
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), verifier.ReasonBadCredential) {
		t.Fatalf("middleware oversized bearer: %d %q", rec.Code, rec.Body)
	}
}

// Hole 3 through the proxy: refused MCP bodies never reach the upstream
// (an oversized one was cut to 1 MiB and forwarded), and an allowed one
// arrives byte for byte.
func TestAttackMCPThroughProxy(t *testing.T) {
	e := newAttackEnv(t)
	var got []byte
	client, base, hits := proxyTo(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.ReadAll(r.Body)
	}))
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"x"}}}`
	if st, _ := rawRequest(t, client, "POST", base, "/mcp", call); st != 200 || string(got) != call {
		t.Fatalf("allowed call: %d, upstream got %q", st, got)
	}
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"shell","Name":"search_docs"}}`, 400},
		{`[` + call + `]`, 400},
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"` + strings.Repeat("a", verifier.MaxMCPBody) + `"}}}`, 413},
	} {
		before := *hits
		st, body := rawRequest(t, client, "POST", base, "/mcp", tc.body)
		if st != tc.code || *hits != before {
			t.Errorf("%.60s…: %d %.200q (upstream hit: %v), want %d", tc.body, st, body, *hits != before, tc.code)
		}
		if tc.code == 400 && !strings.Contains(body, `"error":{"code":-32600`) {
			t.Errorf("refusal is not a JSON-RPC error: %q", body)
		}
	}
}
