package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayCallEndsOnRevocation: a tools/call relayed while its task was
// live and answered by the upstream as JSON after the task's revocation
// (a long tool: a build, a search) handed its result to the revoked agent;
// a tool that watched its request's context ran on. The gateway now holds
// the call to its peer while it waits: the upstream's request is cancelled
// at the refusal (within the re-check interval) and an answer arriving
// after it is not relayed — the agent gets the refusal.
func TestGatewayCallEndsOnRevocation(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(map[bool]string{false: "careless", true: "watching"}[watch], func(t *testing.T) {
			f := newFixture(t)
			view := &verifier.LivenessView{MaxStaleness: time.Hour}
			task := "spiffe://example.org/agent/researcher/task/T-41"
			if err := view.Update(time.Now().Add(-time.Minute), []string{task}); err != nil {
				t.Fatal(err)
			}
			f.v.Liveness = view.Check
			started, answer, upstreamDone, quit := make(chan struct{}, 1), make(chan struct{}), make(chan string, 1), make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				var m struct {
					ID     json.RawMessage `json:"id"`
					Method string          `json:"method"`
				}
				json.Unmarshal(b, &m)
				w.Header().Set("Content-Type", "application/json")
				switch m.Method {
				case "tools/call":
				case "tools/list":
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}}]}}`, m.ID)
					return
				default:
					fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"u","version":"1"}}}`, m.ID)
					return
				}
				started <- struct{}{}
				if watch {
					select {
					case <-r.Context().Done():
						upstreamDone <- "cancelled"
					case <-quit:
					}
					return
				}
				<-answer
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, m.ID)
				upstreamDone <- "answered"
			}))
			t.Cleanup(up.Close)
			t.Cleanup(func() { close(quit) }) // first: a handler still waiting ends
			_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
			tok := f.token(t, "T-41", []string{"fs:read"}, resource)
			type result struct {
				resp *http.Response
				body string
			}
			done := make(chan result, 1)
			go func() {
				resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/agents/T-41/a"}}}`)
				done <- result{resp, body}
			}()
			select {
			case <-started:
			case r := <-done:
				t.Fatalf("the call was answered before it reached the upstream: %d %s", r.resp.StatusCode, r.body)
			case <-time.After(15 * time.Second):
				t.Fatal("the call did not reach the upstream")
			}
			if err := view.Apply(time.Now(), nil, []string{task}); err != nil {
				t.Fatal(err)
			}
			if !watch {
				close(answer)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("the call neither answered nor ended 15 s after the revocation")
			}
			if strings.Contains(r.body, "the secret result") {
				t.Fatalf("the revoked task got the call's result: %s", r.body)
			}
			if !strings.Contains(r.body, "revoked") {
				t.Errorf("the answer does not name the refusal: %d %s", r.resp.StatusCode, r.body)
			}
			if watch {
				select {
				case s := <-upstreamDone:
					if s != "cancelled" {
						t.Errorf("upstream: %s", s)
					}
				case <-time.After(5 * time.Second):
					t.Error("the upstream's request was not cancelled")
				}
			}
		})
	}
}
