package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const payPolicy = `
rule "pay" {
  effect            = "allow"
  require_signature = true
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["POST"]
      paths   = ["/kb/pay"]
    }
  }
}
`

// TestFrontEndsVerifySignaturesAlike: one daemon; the proxy, the HTTP
// middleware and ext_authz (with the body) get the same three requests to
// a rule that requires a signature — signed by the task, signed with the
// body changed afterwards, unsigned — and answer alike: allowed,
// signature_digest_mismatch, signature_missing; the check API, which
// cannot pass a signed request, refuses with signature_missing too. Every
// decision is audited; the allowed ones with the agent's signature.
func TestFrontEndsVerifySignaturesAlike(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream") }))
	t.Cleanup(upstream.Close)
	f := startWith(t, `check_api {
  listen = "127.0.0.1:0"
}
ext_authz {
  listen = "127.0.0.1:0"
}
proxy {
  listen   = "127.0.0.1:0"
  upstream = "`+upstream.URL+`"
}
`, "", payPolicy)
	task := f.taskSVID(t, f.ca, "kb:read")
	pem, _ := testca.SVIDPEM(t, task)
	const body = `{"amount":10}`
	changed := func(r *http.Request) {
		b := `{"amount":99}`
		r.Body, r.ContentLength, r.GetBody = io.NopCloser(strings.NewReader(b)), int64(len(b)), nil
	}
	// signedHeaders signs POST targetURI with body as the task would.
	signedHeaders := func(targetURI string) http.Header {
		m := &httpsig.Message{Method: "POST", TargetURI: targetURI, Header: http.Header{}}
		s := httpsig.RequestSigner{Chain: task.Certificates, Key: task.PrivateKey}
		if _, err := s.Sign(m, []byte(body), time.Now()); err != nil {
			t.Fatal(err)
		}
		return m.Header
	}
	type variant struct {
		name, want string
	}
	variants := []variant{{"signed", "allow"}, {"changed", httpsig.ReasonDigest}, {"unsigned", httpsig.ReasonMissing}}

	proxy := func(v variant) string {
		var rt http.RoundTripper = &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(task, f.ca.X509Bundle(),
			tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))}
		if v.name == "changed" {
			next := rt
			rt = roundTrip(func(r *http.Request) (*http.Response, error) { changed(r); return next.RoundTrip(r) })
		}
		if v.name != "unsigned" {
			rt = &httpsig.Transport{Base: rt, Source: x509svid.Source(task)}
		}
		resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Post("https://"+f.d.Addr("proxy").String()+"/kb/pay", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return outcome(resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
	}
	middleware := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	viaMiddleware := func(v variant) string {
		sent := body
		if v.name == "changed" {
			sent = `{"amount":99}`
		}
		r := httptest.NewRequest("POST", "https://kb.internal/kb/pay", strings.NewReader(sent))
		r.RequestURI = "/kb/pay"
		r.TLS = &tls.ConnectionState{PeerCertificates: task.Certificates}
		if v.name != "unsigned" {
			r.Header = signedHeaders("https://kb.internal/kb/pay")
		}
		rec := httptest.NewRecorder()
		middleware.ServeHTTP(rec, r)
		return outcome(rec.Code, rec.Header().Get(verifier.HeaderDenyReason))
	}
	conn, err := grpc.NewClient(f.d.Addr("ext_authz").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	extAuthz := func(v variant) string {
		headers := map[string]string{"content-length": "13"}
		if v.name != "unsigned" {
			for k, vals := range signedHeaders("https://kb.internal/kb/pay") {
				headers[strings.ToLower(k)] = vals[0]
			}
		}
		sent := body
		if v.name == "changed" {
			sent = `{"amount":99}`
		}
		resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Certificate: url.PathEscape(string(pem))},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Scheme: "https",
				Host: "kb.internal", Path: "/kb/pay", Headers: headers, RawBody: []byte(sent)}}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return "allow"
		}
		return resp.GetStatus().GetMessage()
	}
	for _, v := range variants {
		for name, fe := range map[string]func(variant) string{"proxy": proxy, "http": viaMiddleware, "ext_authz": extAuthz} {
			if got := fe(v); !strings.Contains(got, v.want) {
				t.Errorf("%s via %s: %q, want %s", v.name, name, got, v.want)
			}
		}
	}
	// The check API: the service passes the request it received
	// ("request": method, target URI, headers, body); without it, the rule's
	// requirement refuses.
	check := func(req map[string]any, path string) (int, string) {
		m := map[string]any{"certificate": string(pem), "action": map[string]string{"kind": "http", "method": "POST", "path": path}}
		if req != nil {
			m["request"] = req
		}
		b, _ := json.Marshal(m)
		resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(out)
	}
	checkRequest := func(v variant) map[string]any {
		sent := body
		if v.name == "changed" {
			sent = `{"amount":99}`
		}
		headers := map[string]string{}
		if v.name != "unsigned" {
			for k, vals := range signedHeaders("https://kb.internal/kb/pay") {
				headers[k] = vals[0]
			}
		}
		return map[string]any{"method": "POST", "target_uri": "https://kb.internal/kb/pay", "headers": headers,
			"body": base64.StdEncoding.EncodeToString([]byte(sent))}
	}
	for _, v := range variants {
		code, out := check(checkRequest(v), "/kb/pay")
		want := `"allow":true`
		if v.want != "allow" {
			want = v.want
		}
		if code != 200 || !strings.Contains(out, want) {
			t.Errorf("%s via check_api: %d %s, want %s", v.name, code, out, want)
		}
	}
	if _, out := check(nil, "/kb/pay"); !strings.Contains(out, `"allow":false`) || !strings.Contains(out, httpsig.ReasonMissing) {
		t.Fatalf("check API without the request: %s", out)
	}
	if code, out := check(checkRequest(variant{"signed", "allow"}), "/kb/other"); code != 400 || !strings.Contains(out, "is not the request's") {
		t.Fatalf("check API, action and request disagree: %d %s", code, out)
	}

	f.d.Close()
	file, _ := os.Open(f.auditPath)
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 1<<20)
	signed := map[string]int{}
	for sc.Scan() {
		var r audit.Record
		json.Unmarshal(sc.Bytes(), &r)
		if r.Type == audit.TypeDecision && r.Decision == "allow" && r.AgentSig != nil && r.AgentSig.Base != "" {
			signed[r.Frontend]++
		}
	}
	for _, fe := range []string{"proxy", "http", "ext_authz", "check_api"} {
		if signed[fe] != 1 {
			t.Errorf("%s: %d allowed records with the agent's signature, want 1", fe, signed[fe])
		}
	}
}

func outcome(status int, reason string) string {
	if status == 200 {
		return "allow"
	}
	return reason
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
