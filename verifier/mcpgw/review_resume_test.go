package mcpgw_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func rawReq(t *testing.T, method, url, tok, sid, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestReviewResumedStreamUnfiltered: resuming the tools/list stream with
// Last-Event-ID would make the upstream replay the unfiltered answer on a
// GET; the gateway refuses resumption (400).
func TestReviewResumedStreamUnfiltered(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)}, 0)
	gw := f.httpGateway(t, up)
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	resp, body := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	t.Logf("init %d sid %q %s", resp.StatusCode, sid, body)
	resp, body = rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	t.Logf("initialized %d %s", resp.StatusCode, body)
	resp, body = rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	t.Logf("list %d %s", resp.StatusCode, body)
	if !strings.Contains(body, `"id":2,`) || !strings.Contains(body, `"name":"read_file"`) || strings.Contains(body, "admin_reset") {
		t.Fatalf("the list (on a stream with a priming event) is not the filtered answer: %s", body)
	}
	i := strings.Index(body, "id: ")
	prime := strings.TrimSpace(body[i+4 : i+4+strings.Index(body[i+4:], "\n")])
	// resume the tools/list stream from its priming event: the upstream
	// replays the list answer on a GET
	resp, body = rawReq(t, "GET", gw.URL, tok, sid, "", "Last-Event-ID", prime)
	t.Logf("resumed %d %s", resp.StatusCode, body)
	if strings.Contains(body, "admin_reset") || strings.Contains(body, "write_file") {
		t.Fatalf("the resumed stream replayed the unfiltered tools/list answer: %s", body)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Last-Event-ID") {
		t.Fatalf("resumption: %d %s, want 400 naming Last-Event-ID", resp.StatusCode, body)
	}
}

// TestGatewayGETStreamDropsResponses: a GET stream passes the server's
// requests and notifications and drops responses (a GET answers no
// request), counted; Last-Event-ID never reaches the upstream.
func TestGatewayGETStreamDropsResponses(t *testing.T) {
	f := newFixture(t)
	var sawLastEventID atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		if r.Header.Get("Last-Event-ID") != "" {
			sawLastEventID.Store(true)
		}
		if r.Method == http.MethodPost {
			w.Header().Set("Mcp-Session-Id", "s-1")
			w.Header().Set("Content-Type", "application/json")
			var m struct{ ID json.RawMessage }
			json.Unmarshal(in, &m)
			w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{}}`))
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: e1\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"admin_reset\"}]}}\n\n")
		io.WriteString(w, "data: [{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"prompts\":[{\"name\":\"secret_prompt\"}]}}]\n\n")
		io.WriteString(w, "data: not json\n\n")
		io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"x\",\"result\":{\"tools\":[{\"name\":\"write_file\"}]}}\n\n")
		io.WriteString(w, "id: e4\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
	}))
	t.Cleanup(up.Close)
	g, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	resp, _ := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, "Last-Event-ID", "e0")
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, body := rawReq(t, "GET", gw.URL, tok, sid, "")
	if resp.StatusCode != 200 || strings.Contains(body, "admin_reset") || strings.Contains(body, "secret_prompt") || strings.Contains(body, "not json") || strings.Contains(body, "write_file") ||
		!strings.Contains(body, "notifications/tools/list_changed") {
		t.Fatalf("GET stream: %d %q", resp.StatusCode, body)
	}
	if n := g.DroppedResponses(); n != 4 {
		t.Fatalf("DroppedResponses = %d, want 4", n)
	}
	if sawLastEventID.Load() {
		t.Fatal("Last-Event-ID reached the upstream")
	}
}
