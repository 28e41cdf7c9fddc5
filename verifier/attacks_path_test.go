package verifier_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentid/agentid/verifier"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// pathAttackPolicy allows /kb/** and denies an admin area and a custom
// method (Google AIP-136 style "/v1/jobs/7:cancel").
const pathAttackPolicy = `
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

rule "kb-private" {
  effect = "deny"
  reason = "private areas"
  action {
    http {
      paths = ["/kb/admin/**", "/kb/jobs/*:cancel"]
    }
  }
}
`

// refusedEverywhere asserts that the proxy (in front of upstream) and
// ext_authz both refuse target and that upstream never served a secret.
func refusedEverywhere(t *testing.T, e *attackEnv, upstream http.Handler, method string, targets ...string) {
	t.Helper()
	client, base, _ := proxyTo(t, e, upstream)
	for _, target := range targets {
		st, body := rawRequest(t, client, method, base, target, "")
		if st == http.StatusOK || strings.Contains(body, "SECRET") || strings.Contains(body, "CANCELLED") {
			t.Errorf("proxy %s %s: %d %q", method, target, st, body)
		}
		if resp := e.extAuthz(t, checkReq(e.certPEM, method, target, nil, "")); code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
			t.Errorf("ext_authz %s %s allowed", method, target)
		}
	}
}

// TestAttackPathParameters: Tomcat, Spring and Jetty drop ";params" from
// every segment before mapping, so "/kb/admin;x/keys" is /kb/admin/keys to
// them while the policy saw the segment "admin;x". A ";" is refused in any
// segment (only dot segments were before); its encoded form %3B, a literal
// ";" in a name to those servers, stays allowed.
func TestAttackPathParameters(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, pathAttackPolicy)
	docs := t.TempDir()
	os.MkdirAll(filepath.Join(docs, "kb", "admin"), 0o755)
	os.WriteFile(filepath.Join(docs, "kb", "admin", "keys"), []byte("SECRET"), 0o644)
	fs := http.FileServer(http.Dir(docs))
	// Tomcat's CoyoteAdapter.parsePathParameters / Spring's
	// UrlPathHelper.removeSemicolonContent, emulated over a FileServer.
	tomcatLike := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		segs := strings.Split(r.URL.Path, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		r.URL.Path, r.URL.RawPath = path.Clean(strings.Join(segs, "/")), ""
		fs.ServeHTTP(w, r)
	})
	refusedEverywhere(t, e, tomcatLike, "GET", "/kb/admin;x/keys", "/kb/admin;/keys", "/kb/admin/keys;x", "/kb;x/admin/keys")
	if err := verifier.CheckPath("/kb/a%3Bb"); err != nil {
		t.Errorf("the encoded form of \";\": %v", err)
	}
}

// TestAttackReservedEscapes: ":" and "%3A" (and the other characters a
// path may carry literally: "@", "!", "$", "&", "'", "(", ")", "*", "+",
// ",", "=") were both canonical, so a deny written with ":" was dodged
// with %3A while a Go 1.22 ServeMux handler saw the same ":cancel". The
// escaped form is refused now, naming the literal one.
func TestAttackReservedEscapes(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, pathAttackPolicy)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /kb/jobs/{job}", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutSuffix(r.PathValue("job"), ":cancel"); ok {
			w.Write([]byte("CANCELLED " + id))
		}
	})
	refusedEverywhere(t, e, mux, "POST", "/kb/jobs/7:cancel", "/kb/jobs/7%3Acancel", "/kb/jobs/7%3acancel")
	for esc, lit := range map[string]string{"%3A": ":", "%40": "@", "%21": "!", "%24": "$", "%26": "&", "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2B": "+", "%2C": ",", "%3D": "="} {
		err := verifier.CheckPath("/kb/a" + esc + "b")
		if err == nil || !strings.Contains(err.Error(), `"/kb/a`+lit+`b"`) {
			t.Errorf("%s: %v, want a refusal naming /kb/a%sb", esc, err, lit)
		}
		if err := verifier.CheckPath("/kb/a" + lit + "b"); err != nil {
			t.Errorf("literal %s: %v", lit, err)
		}
	}
}

// TestAttackLiteralUnsafeBytes: a literal "{" (or another byte a URL path
// must escape: `"<>[\]^` + "`{|}") was accepted by ext_authz and the
// middleware but refused by the proxy, which would forward it escaped.
// Each front-end now refuses it, naming the escaped form, which all
// accept.
func TestAttackLiteralUnsafeBytes(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, pathAttackPolicy)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("reached")) })
	client, base, _ := proxyTo(t, e, ok)
	for _, c := range `"<>[]^` + "`{|}" {
		target := "/kb/a" + string(c) + "b"
		if st, _ := rawRequest(t, client, "GET", base, target, ""); st == http.StatusOK {
			t.Errorf("proxy %s: %d", target, st)
		}
		if resp := e.extAuthz(t, checkReq(e.certPEM, "GET", target, nil, "")); code.Code(resp.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT {
			t.Errorf("ext_authz %s: %v", target, resp.GetStatus())
		}
		esc := "/kb/a%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])) + "b"
		if err := verifier.CheckPath(target); err == nil || !strings.Contains(err.Error(), esc) {
			t.Errorf("%s: %v, want a refusal naming %s", target, err, esc)
		}
		if st, body := rawRequest(t, client, "GET", base, esc, ""); st != http.StatusOK {
			t.Errorf("proxy %s: %d %q", esc, st, body)
		}
		if resp := e.extAuthz(t, checkReq(e.certPEM, "GET", esc, nil, "")); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Errorf("ext_authz %s: %v", esc, resp.GetStatus())
		}
	}
}

// TestAttackGRPCKindAlike: a gRPC call through Envoy (ext_authz) or an
// HTTP handler serving gRPC (the middleware) was decided as {http, POST,
// /pkg.Svc/Method}, so a grpc deny rule that the interceptors apply did
// not, and an http allow let the call through. A POST with a gRPC content
// type is decided as the gRPC call {grpc, /pkg.Svc/Method} by every
// front-end (after the path's own checks); an MCP path stays MCP. A gRPC
// type beside another (two lines, or a comma) is refused
// (TestAttackGRPCContentTypeList).
func TestAttackGRPCKindAlike(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, grpcKindPolicy)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.jwt))
	_, err := e.v.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/kb.v1.KB/Delete"}, func(context.Context, any) (any, error) { return nil, nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("interceptor: %v", err)
	}
	mw := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ran")) }))
	for _, tc := range []struct {
		path, contentType string
		want              code.Code
	}{
		{"/kb.v1.KB/Delete", "application/grpc", code.Code_PERMISSION_DENIED},
		{"/kb.v1.KB/Delete", "application/grpc+proto", code.Code_PERMISSION_DENIED},
		{"/kb.v1.KB/Delete", "Application/GRPC-Web", code.Code_PERMISSION_DENIED},
		{"/kb.v1.KB/Delete", "application/grpc ;", code.Code_PERMISSION_DENIED},                // connect-go and grpc-go read it as gRPC
		{"/kb.v1.KB/Delete", "application/grpc\t; charset=utf-8", code.Code_PERMISSION_DENIED}, // (mime.ParseMediaType)
		{"/kb.v1.KB/Delete", "application/connect+proto", code.Code_PERMISSION_DENIED},         // Connect streaming
		{"/kb.v1.KB/Delete", "application/proto", code.Code_PERMISSION_DENIED},                 // Connect unary, binary
		{"/kb.v1.KB/Get", "application/grpc", code.Code_OK},
		{"/kb.v1.KB/Delete", "application/json", code.Code_OK}, // an HTTP request: the http rule
		{"/kb/v1/KB/Delete", "application/grpc", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Get", "application/grpcx", code.Code_OK}, // not gRPC to grpc-go either: HTTP
		// A gRPC type beside another (a second line — "\n" here, joined
		// by "," for Envoy — or a comma in a parameter): grpc-go runs the
		// call, other servers read another type; refused, never HTTP.
		{"/kb.v1.KB/Delete", "application/grpc;v=a,b", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Get", "application/grpc;v=\"a,b\"", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "application/grpc\ntext/plain", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "text/plain\napplication/grpc", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "application/grpc\napplication/grpc", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "text/plain, APPLICATION/GRPC+proto", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "application/json\napplication/grpc-web-text", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "application/json,application/proto", code.Code_INVALID_ARGUMENT},
		{"/kb.v1.KB/Delete", "text/plain;x=\"a,b\"", code.Code_OK}, // no gRPC type: HTTP (a JSON body with a parameter other than charset is refused: TestBodyHeadersRule)
	} {
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", tc.path, map[string]string{"content-type": strings.ReplaceAll(tc.contentType, "\n", ",")}, ""))
		if got := code.Code(resp.GetStatus().GetCode()); got != tc.want {
			t.Errorf("ext_authz %s (%q): %v, want %v", tc.path, tc.contentType, resp.GetStatus(), tc.want)
		}
		req := httptest.NewRequest("POST", tc.path, nil)
		req.Header["Content-Type"] = strings.Split(tc.contentType, "\n")
		req.Header.Set("Authorization", "Bearer "+e.jwt)
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		want := map[code.Code]int{code.Code_OK: 200, code.Code_PERMISSION_DENIED: 403, code.Code_INVALID_ARGUMENT: 400}[tc.want]
		if rec.Code != want {
			t.Errorf("middleware %s (%q): %d %q, want %d", tc.path, tc.contentType, rec.Code, rec.Body, want)
		}
	}
}

// TestAttackMethodOverride: frameworks that honour X-HTTP-Method-Override
// (and X-HTTP-Method, X-Method-Override) run a POST carrying "DELETE" as
// a DELETE, past a deny on DELETE that the verifier applied to "POST".
// Such headers are refused: the method is the request's own.
func TestAttackMethodOverride(t *testing.T) {
	e := newAttackEnv(t)
	mw := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ran")) }))
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "x-http-method-override"} {
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb/doc-1", map[string]string{strings.ToLower(h): "DELETE"}, ""))
		if code.Code(resp.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT {
			t.Errorf("ext_authz with %s: %v", h, resp.GetStatus())
		}
		req := httptest.NewRequest("POST", "/kb/doc-1", nil)
		req.Header.Set(h, "DELETE")
		req.Header.Set("Authorization", "Bearer "+e.jwt)
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("middleware with %s: %d %q", h, rec.Code, rec.Body)
		}
	}
}

// TestAttackMethodOverrideParameter: Symfony/Laravel (on by default in
// Laravel) and Rails read the method from a "_method" parameter; PHP also
// reads ".method" and " method" as "_method". A query carrying one is
// refused by every HTTP front-end (a form body's too:
// TestAttackFormMethodOverride).
func TestAttackMethodOverrideParameter(t *testing.T) {
	e := newAttackEnv(t)
	mw := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ran")) }))
	for _, q := range []string{"_method=DELETE", "a=1&_method=delete", "_METHOD=DELETE", "%5Fmethod=DELETE", ".method=DELETE", "_method[]=DELETE", "_method",
		// review 9: PHP drops leading spaces, reads the name as a C string
		// and keeps invalid escapes as they are
		"%20_method=DELETE", "+_method=DELETE", "_method%00=DELETE", "_method%00x=DELETE", "%5Fmethod%00%zz=DELETE"} {
		target := "/kb/doc-1?" + q
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", target, nil, ""))
		if code.Code(resp.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT {
			t.Errorf("ext_authz %s: %v", target, resp.GetStatus())
		}
		req := httptest.NewRequest("POST", target, nil)
		req.Header.Set("Authorization", "Bearer "+e.jwt)
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("middleware %s: %d %q", target, rec.Code, rec.Body)
		}
	}
	for _, q := range []string{"method=DELETE", "x_method=1", "a=_method"} {
		if resp := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc-1?"+q, nil, "")); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			t.Errorf("ext_authz ?%s: %v", q, resp.GetStatus())
		}
	}
}

// TestAttackListenOutsideTheGateway: a subscriptions/listen (MCP
// 2026-07-28) names the resources whose updates it wants; ext_authz, the
// proxy and the middleware decided it as {mcp, subscriptions/listen}
// without a name, so a deny on the resource did not apply. One resource
// is now decided as resources/subscribe of it; more than one is refused
// there (the gateway and mcpauth decide each).
func TestAttackListenOutsideTheGateway(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, `
rule "mcp-any" {
  effect = "allow"
  action {
    mcp {}
  }
}
rule "no-etc" {
  effect = "deny"
  action {
    mcp {
      resources = ["file:///etc/**"]
    }
  }
}
`)
	listen := func(uris string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[` + uris + `]}}}`
	}
	for _, tc := range []struct {
		body string
		want code.Code
	}{
		{listen(`"file:///etc/shadow"`), code.Code_PERMISSION_DENIED},
		{listen(`"file:///srv/a"`), code.Code_OK},
		{listen(`"file:///srv/a","file:///etc/shadow"`), code.Code_INVALID_ARGUMENT},
		{listen(`"file:///srv/../etc/shadow"`), code.Code_INVALID_ARGUMENT},
		{listen(``), code.Code_OK},
		{`{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":"file:///etc/shadow"}}}`, code.Code_INVALID_ARGUMENT},
	} {
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", nil, tc.body))
		if got := code.Code(resp.GetStatus().GetCode()); got != tc.want {
			t.Errorf("%s: %v %s, want %v", tc.body, got, resp.GetStatus().GetMessage(), tc.want)
		}
	}
}
