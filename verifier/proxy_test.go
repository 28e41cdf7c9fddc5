package verifier_test

import (
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

func TestProxy(t *testing.T) {
	// The upstream echoes what it received.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" agent="+r.Header.Get(verifier.HeaderAgent)+" forged="+r.Header.Get("X-Agentid-Admin")+
			" claims="+r.Header.Get(verifier.HeaderClaims)+" body="+string(body))
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)

	ca := testca.New(t, td, time.Now())
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: mcpPolicy, Headers: verifier.AllHeaders}
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(ca.CreateX509SVID(proxyID), ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: verifier.NewProxy(v, u, []string{"/mcp"}), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	base := "https://" + l.Addr().String()

	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(
		ca.CreateX509SVID(taskID, ext(t, c)), ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))}}

	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("X-Agentid-Admin", "yes")
		req.Header.Set("X-Agentid-Agent", "admin")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := do("GET", "/kb/doc-1", "")
	if code != 200 || !strings.HasPrefix(body, "GET /kb/doc-1 agent=researcher forged= claims=") {
		t.Fatalf("allowed: %d %q", code, body)
	}
	enc := strings.TrimSuffix(strings.SplitAfter(body, "claims=")[1], " body=")
	raw, _ := base64.RawURLEncoding.DecodeString(enc)
	if got, err := svid.Parse(raw); err != nil || !got.Equal(c) {
		t.Fatalf("claims header: %v %v", got, err)
	}

	if code, body := do("POST", "/tickets/new", ""); code != 403 {
		t.Fatalf("denied: %d %q", code, body)
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}`
	if code, body := do("POST", "/mcp", call); code != 200 || !strings.HasSuffix(body, "body="+call) {
		t.Fatalf("MCP allowed (body forwarded intact): %d %q", code, body)
	}
	if code, _ := do("POST", "/mcp", strings.Replace(call, "search", "drop_tables", 1)); code != 403 {
		t.Fatalf("MCP denied: %d", code)
	}
}
