package mcpauth_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHTTPBodyCharsetRefused: Handler decides the message as UTF-8, as it
// arrived; a Content-Type naming another charset, one that cannot be read,
// or a Content-Encoding is refused (415, a JSON-RPC error with the
// message's id) and audited, before the MCP server reads the body.
func TestHTTPBodyCharsetRefused(t *testing.T) {
	f := newFixture(t)
	srv := f.httpServer(t, false)
	tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	const msg = `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/agents/T-42/a"}}}`
	for _, h := range [][2]string{
		{"Content-Type", "application/json; charset=utf-7"},
		{"Content-Type", "application/json; charset=UTF-16"},
		{"Content-Type", "application/json; charset"},
		{"Content-Encoding", "gzip"},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(msg))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(h[0], h[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 415 || !strings.Contains(string(b), `"id":5`) || !strings.Contains(string(b), h[0]+":") {
			t.Fatalf("%s: %s: %d %s; want 415 with a JSON-RPC error naming it", h[0], h[1], resp.StatusCode, b)
		}
	}
	n := 0
	for _, r := range f.records(t) {
		if strings.HasPrefix(r.Reason, "bad_request: Content-") && r.Decision == "deny" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("%d refusals audited, want 4", n)
	}
}
