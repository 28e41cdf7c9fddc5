package mcpgw_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestReviewListFilterID: a tools/list whose id the upstream echoes in
// another spelling (1.0 → 1, as every JSON library that parses numbers
// does) must still be filtered: admin_reset is not the child's. The
// filtered answer comes back under the agent's id as the agent spelled it
// (the gateway sends the upstream an id of its own).
func TestReviewListFilterID(t *testing.T) {
	for _, id := range []string{`1`, `1.0`, `1e0`, `10E-1`, `"\u0061"`, `"<a>"`} {
		t.Run(id, func(t *testing.T) {
			f := newFixture(t)
			up := newUpstream(t, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}, 0)
			gw := f.httpGateway(t, up)
			tok := f.token(t, "T-42", []string{"fs:read"}, resource)
			resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/list","params":{}}`)
			t.Logf("%d %s", resp.StatusCode, body)
			if strings.Contains(body, "admin_reset") || strings.Contains(body, "write_file") {
				t.Fatalf("id %s: the unfiltered list reached the agent: %s", id, body)
			}
			if !strings.Contains(body, `"name":"read_file"`) || !strings.Contains(body, `"id":`+id+`,`) {
				t.Fatalf("id %s: not the filtered list under the agent's id: %s", id, body)
			}
		})
	}
}

// TestGatewayListAnswerUnderAnotherID: an upstream answering a tools/list
// under an id the gateway did not send (as JSON or on an SSE stream) gets
// its answer replaced by an error, never passed on unfiltered; a stray
// response on a call's stream is dropped and counted.
func TestGatewayListAnswerUnderAnotherID(t *testing.T) {
	const list = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"admin_reset","inputSchema":{"type":"object"}}]}}`
	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprint("sse=", sse), func(t *testing.T) {
			f := newFixture(t)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				in, _ := io.ReadAll(r.Body)
				if !strings.Contains(string(in), `"id":"agentid-gateway-`) {
					t.Errorf("the upstream got the agent's id: %s", in)
				}
				if sse {
					w.Header().Set("Content-Type", "text/event-stream")
					fmt.Fprintf(w, "event: message\ndata: %s\n\n", list)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(list))
			}))
			t.Cleanup(up.Close)
			g, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
			tok := f.token(t, "T-42", []string{"fs:read"}, resource)
			_, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
			if strings.Contains(body, "admin_reset") || !strings.Contains(body, `"error"`) || !strings.Contains(body, `"id":1,`) {
				t.Fatalf("an answer under another id: %s", body)
			}
			// a ping's stream: the stray list answer is dropped, not passed on
			_, body = post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
			if strings.Contains(body, "admin_reset") {
				t.Fatalf("a stray answer reached the agent: %s", body)
			}
			if g.DroppedResponses() != 2 {
				t.Fatalf("DroppedResponses = %d, want 2", g.DroppedResponses())
			}
		})
	}
}
