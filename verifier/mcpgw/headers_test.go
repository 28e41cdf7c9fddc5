package mcpgw_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestGatewayUnderscoreAndProxyOnlyHeaders (review 10): the gateway
// replaced x-agentid-* headers but forwarded "X_Agentid_Claims", which a
// CGI-style upstream (net/http/cgi, PHP, Django's META) reads as
// HTTP_X_AGENTID_CLAIMS: a header name with "_" is now refused (400,
// before the upstream is asked). Headers only a trusted proxy may set
// (the client certificate, the client's address, the original URL) were
// forwarded as the agent wrote them: they are dropped now.
func TestGatewayUnderscoreAndProxyOnlyHeaders(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	gw := f.httpGateway(t, up)
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`
	resp, body := post(t, gw.URL, tok, init, "X_Agentid_Claims", "eyJzY29wZSI6WyJmczphZG1pbiJdfQ", "X_Agentid_Spiffe_Id", "spiffe://example.org/agent/admin/task/A")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `X_agentid_claims`) {
		t.Errorf("initialize with underscore identity headers: %d %.300q", resp.StatusCode, body)
	}
	if n := len(up.seenHeaders()); n != 0 {
		t.Errorf("the upstream was asked %d time(s)", n)
	}
	forged := map[string]string{"X-Real-Ip": "10.0.0.1", "Client-Cert": ":MIIBforged=:", "X-Original-Url": "/admin"}
	var hs []string
	for k, v := range forged {
		hs = append(hs, k, v)
	}
	if resp, body := post(t, gw.URL, tok, init, hs...); resp.StatusCode != http.StatusOK {
		t.Fatalf("initialize: %d %.300q", resp.StatusCode, body)
	}
	for _, h := range up.seenHeaders() {
		for k, v := range forged {
			if h.Get(k) == v {
				t.Errorf("the agent's %s: %q reached the upstream", k, v)
			}
		}
	}
}
