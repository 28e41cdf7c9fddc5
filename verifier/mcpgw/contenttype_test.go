package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayUnknownContentTypeFailsClosed: an upstream answer whose
// Content-Type the gateway does not take for JSON or SSE must not reach the
// agent unread. Clients are lenient (the TypeScript SDK parses any type
// that contains "text/event-stream" as SSE), so passing such an answer
// through would hand them an unfiltered list, or a list under the
// gateway's own id.
func TestGatewayUnknownContentTypeFailsClosed(t *testing.T) {
	for _, ct := range []string{
		"text/event-stream, text/plain", // mime.ParseMediaType refuses it; clients see SSE
		"text/plain; x=text/event-stream",
		"text/event-stream;;",
		"application/json-seq",
		"text/plain",
		"", // none at all
	} {
		t.Run(ct, func(t *testing.T) {
			f := newFixture(t)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var req struct {
					ID json.RawMessage `json:"id"`
				}
				in, _ := io.ReadAll(r.Body)
				json.Unmarshal(in, &req)
				list := `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"tools":[{"name":"admin_reset","inputSchema":{"type":"object"}}]}}`
				w.Header()["Content-Type"] = []string{ct}
				if strings.Contains(ct, "event-stream") {
					list = "event: message\ndata: " + list + "\n\n"
				}
				w.Write([]byte(list))
			}))
			t.Cleanup(up.Close)
			_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
			tok := f.token(t, "T-42", []string{"fs:read"}, resource)
			resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
			if strings.Contains(body, "admin_reset") {
				t.Fatalf("an answer of type %q reached the agent unread: %d %s", ct, resp.StatusCode, body)
			}
			if !strings.Contains(body, `"error"`) || !strings.Contains(body, `"id":1,`) {
				t.Fatalf("want a JSON-RPC error under the agent's id, got %d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestGatewayListUnder2xxStatusFiltered: clients read any 2xx but 202 as
// the answer (the TypeScript SDK's response.ok, go-sdk's 200–299), so a
// list answered with 201, 203 or 206 must be filtered like one answered
// with 200, in JSON and in SSE; a 202 carries no answer to the agent.
func TestGatewayListUnder2xxStatusFiltered(t *testing.T) {
	for _, status := range []int{201, 202, 203, 206} {
		for _, sse := range []bool{false, true} {
			t.Run(fmt.Sprint(status, " sse=", sse), func(t *testing.T) {
				f := newFixture(t)
				up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var req struct {
						ID json.RawMessage `json:"id"`
					}
					in, _ := io.ReadAll(r.Body)
					json.Unmarshal(in, &req)
					list := `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}},{"name":"admin_reset","inputSchema":{"type":"object"}}]}}`
					if sse {
						w.Header().Set("Content-Type", "text/event-stream")
						list = "event: message\ndata: " + list + "\n\n"
					} else {
						w.Header().Set("Content-Type", "application/json")
					}
					w.WriteHeader(status)
					w.Write([]byte(list))
				}))
				t.Cleanup(up.Close)
				_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
				tok := f.token(t, "T-42", []string{"fs:read"}, resource)
				resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
				if strings.Contains(body, "admin_reset") {
					t.Fatalf("a list answered with %d reached the agent unfiltered: %d %s", status, resp.StatusCode, body)
				}
			})
		}
	}
}

// TestGatewayRefusesEncodedBodies: the gateway decides the body's bytes
// as they are; an upstream that inflates a body sent with
// Content-Encoding (express.json() does) would run what it inflated. A
// compressed body is refused (415) and the header never forwarded.
func TestGatewayRefusesEncodedBodies(t *testing.T) {
	f := newFixture(t)
	var got atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	for _, ce := range []string{"gzip", "deflate", "br", "GZIP"} {
		resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`, "Content-Encoding", ce)
		if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(body, "Content-Encoding") {
			t.Errorf("Content-Encoding %s: %d %s; want 415 naming Content-Encoding", ce, resp.StatusCode, body)
		}
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("%d encoded requests reached the upstream", n)
	}
	// identity is no encoding
	if resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`, "Content-Encoding", "identity"); resp.StatusCode == http.StatusUnsupportedMediaType {
		t.Fatalf("identity refused: %s", body)
	}
}
