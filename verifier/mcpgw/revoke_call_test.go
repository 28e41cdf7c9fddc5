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

// callResult is the agent's answer to a tools/call through the gateway.
type callResult struct {
	resp *http.Response
	body string
}

// slowCall is a tools/call of task T-41 (live in a liveness view) through
// the gateway to an upstream that answers initialize and tools/list at
// once and hands the call to tool; started is signalled when the call
// reaches the upstream.
type slowCall struct {
	view *verifier.LivenessView
	task string
	done chan callResult
}

// startSlowCall sends the call and returns once it has reached the
// upstream. tool answers it (id: the call's id as the upstream got it);
// quit is closed when the test ends, before the upstream closes.
func startSlowCall(t *testing.T, tool func(w http.ResponseWriter, r *http.Request, id json.RawMessage, quit <-chan struct{})) *slowCall {
	t.Helper()
	f := newFixture(t)
	s := &slowCall{view: &verifier.LivenessView{MaxStaleness: time.Hour}, task: "spiffe://example.org/agent/researcher/task/T-41", done: make(chan callResult, 1)}
	if err := s.view.Update(time.Now().Add(-time.Minute), []string{s.task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = s.view.Check
	started, quit := make(chan struct{}, 1), make(chan struct{})
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
			started <- struct{}{}
			tool(w, r, m.ID, quit)
		case "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}}]}}`, m.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"u","version":"1"}}}`, m.ID)
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(quit) }) // first: a handler still waiting ends
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	go func() {
		resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/agents/T-41/a"}}}`)
		s.done <- callResult{resp, body}
	}()
	select {
	case <-started:
	case r := <-s.done:
		t.Fatalf("the call was answered before it reached the upstream: %d %s", r.resp.StatusCode, r.body)
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not reach the upstream")
	}
	return s
}

// revoke revokes the call's task.
func (s *slowCall) revoke(t *testing.T) {
	t.Helper()
	if err := s.view.Apply(time.Now(), nil, []string{s.task}); err != nil {
		t.Fatal(err)
	}
}

// result waits for the agent's answer.
func (s *slowCall) result(t *testing.T) callResult {
	t.Helper()
	select {
	case r := <-s.done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("the call neither answered nor ended 15 s after the revocation")
		return callResult{}
	}
}

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
			answer, upstreamDone := make(chan struct{}), make(chan string, 1)
			s := startSlowCall(t, func(w http.ResponseWriter, r *http.Request, id json.RawMessage, quit <-chan struct{}) {
				if watch {
					select {
					case <-r.Context().Done():
						upstreamDone <- "cancelled"
					case <-quit:
					}
					return
				}
				<-answer
				fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, id)
				upstreamDone <- "answered"
			})
			s.revoke(t)
			if !watch {
				close(answer)
			}
			r := s.result(t)
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
