package verifier_test

// Review 10's findings on the HTTP request path: headers the verifier did
// not decide on reaching the upstream as ones it would have.

import (
	"bufio"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// proxyFor serves the real Proxy (mTLS) in front of upstream (a plain
// httptest server, or h when it is a full *httptest.Server already) and
// returns a dialer giving raw TLS connections as the task.
func proxyFor(t *testing.T, e *attackEnv, upstreamURL string) (dial func() *tls.Conn) {
	t.Helper()
	u, _ := url.Parse(upstreamURL)
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: verifier.NewProxy(e.v, u, []string{"/mcp"}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := claimsUntil(time.Now().Add(time.Hour))
	cfg := verifier.ClientTLSConfig(e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))
	return func() *tls.Conn {
		conn, err := tls.Dial("tcp", l.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		t.Cleanup(func() { conn.Close() })
		return conn
	}
}

// exchange writes raw and reads one response.
func exchangeRaw(t *testing.T, conn net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response to %q: %v", truncateRaw(raw), err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func truncateRaw(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

type seenRequests struct {
	mu   sync.Mutex
	reqs []string
	hdrs []http.Header
	trls []http.Header
}

func (s *seenRequests) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r.Method+" "+r.RequestURI)
	s.hdrs = append(s.hdrs, r.Header.Clone())
	s.trls = append(s.trls, r.Trailer.Clone())
}

func (s *seenRequests) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// TestAttackMethodOverrideUnderscore: "X_HTTP_METHOD_OVERRIDE" is another
// header to Go (X_http_method_override) and to Envoy, but the same CGI
// variable HTTP_X_HTTP_METHOD_OVERRIDE to net/http/cgi (and to Django's
// ASGI request, Symfony's HeaderBag, which folds "_" into "-"): a PHP/
// Symfony or Rack app honours it as the dash form, which is refused.
func TestAttackMethodOverrideUnderscore(t *testing.T) {
	e := newAttackEnv(t)
	cgiApp := &cgi.Handler{Path: "/bin/sh", Args: []string{"-c",
		`printf 'Content-Type: text/plain\n\n'; if [ "$REQUEST_METHOD" = POST ] && [ -n "$HTTP_X_HTTP_METHOD_OVERRIDE" ]; then echo "ran $HTTP_X_HTTP_METHOD_OVERRIDE $PATH_INFO"; else echo "ran $REQUEST_METHOD"; fi`}}
	chain := e.ca.CreateX509SVID(taskID, ext(t, claimsUntil(time.Now().Add(time.Hour)))).Certificates
	mw := e.v.Middleware(cgiApp)
	// The middleware behind a real net/http server (its header parsing),
	// the TLS state set as an mTLS listener would.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.TLS = &tls.ConnectionState{PeerCertificates: chain}
		mw.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// The proxy in front of a net/http server running the same CGI app.
	up := httptest.NewServer(cgiApp)
	t.Cleanup(up.Close)
	dial := proxyFor(t, e, up.URL)
	for _, name := range []string{"X-HTTP-Method-Override", "X_HTTP_METHOD_OVERRIDE", "x_http_method_override", "X-HTTP_Method-Override"} {
		raw := "POST /kb/doc HTTP/1.1\r\nHost: kb\r\nContent-Length: 0\r\n" + name + ": DELETE\r\n\r\n"
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		resp, body := exchangeRaw(t, c, bufio.NewReader(c), raw)
		c.Close()
		if strings.Contains(body, "ran DELETE") {
			t.Errorf("middleware, %s: DELETE: %d %q (past the deny on DELETE)", name, resp.StatusCode, strings.TrimSpace(body))
		}
		pc := dial()
		resp, body = exchangeRaw(t, pc, bufio.NewReader(pc), raw)
		if strings.Contains(body, "ran DELETE") {
			t.Errorf("proxy, %s: DELETE: %d %q (past the deny on DELETE)", name, resp.StatusCode, strings.TrimSpace(body))
		}
		// Envoy passes header names lower-cased, underscores kept
		// (headers_with_underscores_action defaults to ALLOW).
		if r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb/doc", map[string]string{strings.ToLower(name): "DELETE"}, "")); r.GetOkResponse() != nil {
			t.Errorf("ext_authz, %s: allowed", strings.ToLower(name))
		}
	}
}

// TestAttackIdentityHeaderUnderscore: "X_Agentid_Claims" is not an
// x-agentid-* header to the verifier, so neither the proxy nor ext_authz
// strips it; an upstream that reads headers as CGI variables (Go's
// net/http/cgi, PHP, Django's META) reads it as HTTP_X_AGENTID_CLAIMS —
// the identity header the verifier did not send (claims are off by
// default) or sent beside it.
func TestAttackIdentityHeaderUnderscore(t *testing.T) {
	e := newAttackEnv(t)
	cgiApp := &cgi.Handler{Path: "/bin/sh", Args: []string{"-c",
		`printf 'Content-Type: text/plain\n\n'; env | grep '^HTTP_X_AGENTID' | sort`}}
	up := httptest.NewServer(cgiApp)
	t.Cleanup(up.Close)
	conn := proxyFor(t, e, up.URL)()
	resp, body := exchangeRaw(t, conn, bufio.NewReader(conn), "GET /kb/doc HTTP/1.1\r\nHost: kb\r\n"+
		"X_Agentid_Claims: eyJzY29wZSI6WyJrYjphZG1pbiJdfQ\r\nX_AGENTID_SPIFFE_ID: spiffe://example.org/agent/admin/task/A\r\n\r\n")
	t.Logf("proxy: %d, the upstream's CGI environment:\n%s", resp.StatusCode, body)
	if strings.Contains(body, "eyJzY29wZSI6WyJrYjphZG1pbiJdfQ") || strings.Contains(body, "agent/admin") {
		t.Errorf("forged identity headers reached the upstream as HTTP_X_AGENTID_*")
	}
	// ext_authz left them in place (not in headers_to_remove): refused now.
	in := map[string]string{"x_agentid_claims": "eyJzY29wZSI6WyJrYjphZG1pbiJdfQ"}
	r := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", in, ""))
	if ok := r.GetOkResponse(); ok != nil {
		t.Errorf("ext_authz: allowed; as Envoy applies it the upstream gets %v", applyAsEnvoy(in, ok))
	} else if code.Code(r.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT || !strings.Contains(r.GetStatus().GetMessage(), `"x_agentid_claims"`) {
		t.Errorf("ext_authz: %v", r.GetStatus())
	}
	// A header without "_" is still fine, and so is gRPC metadata with one
	// (gRPC servers do not fold names).
	if r := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", map[string]string{"x-trace": "1"}, "")); r.GetOkResponse() == nil {
		t.Errorf("ext_authz, x-trace: %v", r.GetStatus())
	}
	if r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb.v1.KB/Get", map[string]string{"content-type": "application/grpc", "x_trace": "1"}, "")); code.Code(r.GetStatus().GetCode()) == code.Code_INVALID_ARGUMENT {
		t.Errorf("ext_authz, a gRPC call with x_trace metadata: %v", r.GetStatus())
	}
}

// TestAttackProxyForwardsClientHeaders: the proxy terminates the agent's
// mTLS; headers with which upstreams commonly take the client's
// certificate, address or host from the proxy in front of them pass
// through as the agent wrote them: Client-Cert (RFC 9440, which asks a
// TLS-terminating proxy to sanitize it), X-Forwarded-Client-Cert (Envoy's,
// read by SPIFFE services behind Envoy/Istio), True-Client-IP and
// X-Real-IP (chi's middleware.RealIP takes RemoteAddr from them first),
// and X-Forwarded-Host, set from the agent's own Host (gorilla's
// handlers.ProxyHeaders sets r.Host from it).
func TestAttackProxyForwardsClientHeaders(t *testing.T) {
	e := newAttackEnv(t)
	var s seenRequests
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.add(r) }))
	t.Cleanup(up.Close)
	conn := proxyFor(t, e, up.URL)()
	br := bufio.NewReader(conn)
	forged := map[string]string{
		"Client-Cert":             ":MIIBforged=:",
		"X-Forwarded-Client-Cert": "By=spiffe://example.org/kb;URI=spiffe://example.org/agent/admin/task/A",
		"True-Client-Ip":          "10.0.0.1",
		"X-Real-Ip":               "10.0.0.1",
		"Client-Ip":               "10.0.0.1",
		"X-Forwarded-User":        "admin",
		"Remote-User":             "admin",
		"X-Forwarded-Uri":         "/kb/admin/keys",
	}
	raw := "GET /kb/doc HTTP/1.1\r\nHost: admin.example\r\n"
	for k, v := range forged {
		raw += k + ": " + v + "\r\n"
	}
	resp, body := exchangeRaw(t, conn, br, raw+"\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /kb/doc: %d %q", resp.StatusCode, body)
	}
	h := s.hdrs[0]
	for k, v := range forged {
		if h.Get(k) == v {
			t.Errorf("the agent's %s: %q reached the upstream", k, v)
		}
	}
	if h.Get("X-Forwarded-Host") == "admin.example" {
		t.Errorf("the agent's Host reached the upstream as X-Forwarded-Host: admin.example (the policy never saw it)")
	}
}

// TestAttackMiddlewareUnderRewrite: the middleware decides the
// request-target as sent (r.RequestURI), the handler serves r.URL.Path;
// a router in front that rewrites r.URL (http.StripPrefix, a sub-router
// mount) makes them differ. The proxy refuses such a mismatch ("would be
// forwarded as"); the middleware decided the one and served the other.
// It now refuses such a request, naming the path the handler would see.
func TestAttackMiddlewareUnderRewrite(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, `
rule "api" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      paths = ["/**"]
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
`)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/kb/admin/") {
			io.WriteString(w, "SECRET "+r.URL.Path)
			return
		}
		io.WriteString(w, "public "+r.URL.Path)
	})
	mux := http.NewServeMux()
	mux.Handle("/", e.v.Middleware(app))
	mux.Handle("/api/", http.StripPrefix("/api", e.v.Middleware(app))) // the same app, also mounted under /api
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.TLS = &tls.ConnectionState{PeerCertificates: e.ca.CreateX509SVID(taskID, ext(t, claimsUntil(time.Now().Add(time.Hour)))).Certificates}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	for _, target := range []string{"/kb/admin/keys", "/api/kb/admin/keys"} {
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "SECRET") {
			t.Errorf("GET %s: %d %q (decided as %s)", target, resp.StatusCode, b, target)
		}
		if target == "/api/kb/admin/keys" && (resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "rewrote")) {
			t.Errorf("GET %s: %d %q, want 400 naming the rewrite", target, resp.StatusCode, b)
		}
	}
}

// TestAttackExtAuthzHeadersNotShown (review 10): Envoy's ext_authz filter
// can be told to send only some headers (allowed_headers, a common
// tuning). The verifier removed only the incoming x-agentid-* headers it
// was shown, so a forged x-agentid-claims Envoy did not pass to it reached
// the upstream. Every identity header the OK response does not set is now
// in headers_to_remove, shown or not (a header both set and removed would
// be removed: Envoy removes after it sets).
func TestAttackExtAuthzHeadersNotShown(t *testing.T) {
	e := newAttackEnv(t)
	atEnvoy := map[string]string{"x-agentid-claims": "eyJzY29wZSI6WyJrYjphZG1pbiJdfQ", "x-agentid-receipt": "forged", "x-agentid-spiffe-id": "spiffe://example.org/agent/admin/task/A", "x-trace": "1"}
	shown := map[string]string{"x-trace": "1"} // allowed_headers: x-trace only
	for _, receipts := range []bool{false, true} {
		e.v.Receipts = receipts
		if receipts {
			w, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.Close() })
			e.v.Audit = w
		}
		r := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", shown, ""))
		if r.GetOkResponse() == nil {
			t.Fatalf("check: %v", r.GetStatus())
		}
		got := applyAsEnvoy(atEnvoy, r.GetOkResponse())
		if got["x-agentid-claims"] != "" || got["x-agentid-spiffe-id"] != taskID.String() || got["x-agentid-task"] != "T-42" || got["x-trace"] != "1" {
			t.Errorf("receipts %v: as Envoy applies the response the upstream gets %v", receipts, got)
		}
		if rc := got["x-agentid-receipt"]; (rc != "") != receipts || rc == "forged" {
			t.Errorf("receipts %v: x-agentid-receipt %q", receipts, rc)
		}
	}
}
