package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Hole 2: with allowed_callers the check API speaks SPIFFE mTLS and answers
// only the listed callers; the audit record names who asked.
func TestCheckAPIAllowedCallers(t *testing.T) {
	f := startWith(t, `check_api {
  listen          = "127.0.0.1:0"
  allowed_callers = ["spiffe://example.org/envoy"]
}
`, "")
	addr := f.d.Addr("check_api").String()
	body := `{"certificate":` + jsonString(f.taskCert(t, "kb:read")) + `,"action":{"kind":"http","method":"GET","path":"/kb/doc"}}`
	post := func(c *http.Client, scheme string) (*http.Response, error) {
		return c.Post(scheme+"://"+addr+"/v1/check", "application/json", strings.NewReader(body))
	}
	if resp, err := post(http.DefaultClient, "http"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP client answered")
	}
	client := func(id string) *http.Client {
		cfg := tlsconfig.MTLSClientConfig(f.ca.CreateX509SVID(spiffeid.RequireFromString(id)), f.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	if _, err := post(client("spiffe://example.org/agent/x/task/y"), "https"); err == nil {
		t.Fatal("a caller not in allowed_callers was answered")
	}
	resp, err := post(client("spiffe://example.org/envoy"), "https")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"allow":true`)) {
		t.Fatalf("allowed caller: %d %s", resp.StatusCode, out)
	}
	f.d.Close()
	log, _ := os.ReadFile(f.auditPath)
	if !bytes.Contains(log, []byte(`"frontend":"check_api","caller":"spiffe://example.org/envoy"`)) {
		t.Fatalf("audit log does not name the caller:\n%s", log)
	}
}

func jsonString(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Hole 8 (metrics) and hole 10 (field names): every front-end counts its
// decisions; the check API reads lower-case keys, still reads the first
// release's capitalised ones, and refuses both at once.
func TestFrontEndsCountDecisionsAndStrictCheckJSON(t *testing.T) {
	f := startWith(t, `check_api {
  listen = "127.0.0.1:0"
}
ext_authz {
  listen = "127.0.0.1:0"
}
`, "")
	cert := f.taskCert(t, "kb:read")
	checkURL := "http://" + f.d.Addr("check_api").String() + "/v1/check"
	for _, tc := range []struct {
		action string
		status int
		allow  bool
	}{
		{`{"kind":"http","method":"GET","path":"/kb/doc"}`, 200, true},
		{`{"Kind":"http","Method":"GET","Path":"/kb/doc"}`, 200, true},
		{`{"kind":"http","Kind":"mcp","method":"GET","path":"/kb/doc"}`, 400, false},
		{`{"kind":"http","method":"GET","path":"/kb/doc","verb":"x"}`, 400, false},
	} {
		resp, err := http.Post(checkURL, "application/json", strings.NewReader(`{"certificate":`+jsonString(cert)+`,"action":`+tc.action+`}`))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == 200 && bytes.Contains(out, []byte(`"allow":true`)) != tc.allow) {
			t.Errorf("action %s: %d %s", tc.action, resp.StatusCode, out)
		}
	}

	conn, err := grpc.NewClient(f.d.Addr("ext_authz").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Certificate: url.PathEscape(cert)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/kb/doc"}},
	}})
	if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("ext_authz: %v %v", resp, err)
	}
	m := metricsText(t, f)
	for _, want := range []string{
		`agentid_decisions_total{decision="allow",frontend="check_api",rule="kb-read"} 2`,
		`agentid_decisions_total{decision="allow",frontend="ext_authz",rule="kb-read"} 1`,
		`agentid_audit_healthy 1`,
		`agentid_audit_write_errors_total 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// ext_authz with allowed_callers: only Envoy's SPIFFE ID may ask.
func TestExtAuthzAllowedCallers(t *testing.T) {
	f := startWith(t, `ext_authz {
  listen          = "127.0.0.1:0"
  allowed_callers = ["spiffe://example.org/envoy"]
}
`, "")
	cert := f.taskCert(t, "kb:read")
	ask := func(opt grpc.DialOption) (*authv3.CheckResponse, error) {
		conn, err := grpc.NewClient(f.d.Addr("ext_authz").String(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Certificate: url.PathEscape(cert),
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/kb/doc"}},
		}})
	}
	if _, err := ask(grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Fatal("plaintext caller answered")
	}
	mtls := func(id string) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.MTLSClientConfig(f.ca.CreateX509SVID(spiffeid.RequireFromString(id)), f.ca.X509Bundle(), tlsconfig.AuthorizeAny())))
	}
	if _, err := ask(mtls("spiffe://example.org/other")); err == nil {
		t.Fatal("caller outside allowed_callers answered")
	}
	resp, err := ask(mtls("spiffe://example.org/envoy"))
	if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("Envoy: %v %v", resp, err)
	}
	f.d.Close()
	files, _ := audit.Files(f.auditPath)
	if _, err := audit.Verify(files, audit.VerifyOptions{Bundle: f.ca.X509Bundle()}); err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(f.auditPath)
	if !bytes.Contains(log, []byte(`"caller":"spiffe://example.org/envoy"`)) {
		t.Fatalf("audit log does not name Envoy:\n%s", log)
	}
}
