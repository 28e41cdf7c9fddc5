package mcpgw_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestReviewGatewayCredentials (security review of issue 14): an upstream
// that refuses with a challenge and an error body naming the credential
// it was sent. The agent's bearer token and forged identity headers
// never reach it; the gateway's upstream credential never reaches the
// agent (answer headers, body, or the refusal's error).
func TestReviewGatewayCredentials(t *testing.T) {
	f := newFixture(t)
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Clone())
		if r.Header.Get("X-Refuse") != "" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", token="`+r.Header.Get("Authorization")+`"`)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("bad token " + r.Header.Get("Authorization")))
			return
		}
		var msg struct {
			ID json.RawMessage `json:"id"`
		}
		json.NewDecoder(r.Body).Decode(&msg)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": map[string]any{}})
	}))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp"), UpstreamHeader: "Authorization", UpstreamValue: upstreamKey})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	forged := []string{"X-Agentid-Peer", "spiffe://example.org/admin", "X-Agentid-Task", "T-1"}
	for _, refuse := range []bool{false, true} {
		hdr := forged
		if refuse {
			hdr = append(hdr, "X-Refuse", "1")
		}
		req, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		json.NewDecoder(resp.Body).Decode(&map[string]any{})
		resp.Body.Close()
		all, _ := json.Marshal(resp.Header)
		body.Write(all)
		if strings.Contains(body.String(), "upstream-s3cret") {
			t.Fatalf("refuse=%v: the upstream credential reached the agent: %s", refuse, body.String())
		}
	}
	// the body too, read raw
	req, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":8,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Refuse", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if strings.Contains(string(raw), "s3cret") || strings.Contains(resp.Header.Get("Www-Authenticate"), "s3cret") {
		t.Fatalf("the upstream's refusal leaked its credential: %s %v", raw, resp.Header)
	}
	if len(seen) != 3 {
		t.Fatalf("%d requests reached the upstream, want 3", len(seen))
	}
	for _, h := range seen {
		if h.Get("Authorization") != upstreamKey || strings.Contains(strings.Join(h.Values("Authorization"), ","), tok) {
			t.Fatalf("upstream Authorization %q: want only the gateway's credential", h.Values("Authorization"))
		}
		if h.Get("X-Agentid-Peer") == "spiffe://example.org/admin" || h.Get("X-Agentid-Task") == "T-1" {
			t.Fatalf("forged identity headers reached the upstream: %v", h)
		}
	}
}

// TestReviewGatewayGETStreamOfAnotherTask: task B opening the GET stream
// (or resuming it with Last-Event-ID) of task A's session is refused
// before the upstream is asked.
func TestReviewGatewayGETStreamOfAnotherTask(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	gw := f.httpGateway(t, up)
	tokA := f.token(t, "T-41", []string{"fs:read"}, resource)
	tokB := f.token(t, "T-43", []string{"fs:read"}, resource)
	resp, _ := post(t, gw.URL, tokA, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("no session")
	}
	before := len(up.seenHeaders())
	for _, last := range []string{"", sid + "_0"} {
		req, _ := http.NewRequest("GET", gw.URL+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+tokB)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("task B's GET on task A's session (Last-Event-ID %q): %d", last, resp.StatusCode)
		}
	}
	if n := len(up.seenHeaders()); n != before {
		t.Fatalf("%d requests of task B reached the upstream", n-before)
	}
}
