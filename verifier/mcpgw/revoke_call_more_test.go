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

// Review 20: an upstream that sends its answer's headers (200,
// application/json) at once and its body when the tool is done: the
// gateway's refused() runs when the headers arrive, then answerJSON reads
// the body and relays it with no re-check — the task revoked while the
// tool ran gets its result.
func TestGatewayJSONBodyAfterHeadersNotRelayedToRevoked(t *testing.T) {
	f := newFixture(t)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	task := "spiffe://example.org/agent/researcher/task/T-41"
	if err := view.Update(time.Now().Add(-time.Minute), []string{task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = view.Check
	started, answer := make(chan struct{}, 1), make(chan struct{})
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
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // headers now, body when the tool is done
		started <- struct{}{}
		<-answer
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, m.ID)
	}))
	t.Cleanup(up.Close)
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
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not reach the upstream")
	}
	time.Sleep(100 * time.Millisecond) // the gateway has the headers and waits on the body
	if err := view.Apply(time.Now(), nil, []string{task}); err != nil {
		t.Fatal(err)
	}
	close(answer)
	r := <-done
	if strings.Contains(r.body, "the secret result") {
		t.Fatalf("the revoked task got the call's result: %s", r.body)
	}
}

// Review 20: the refusal written by refused() for a JSON answer goes out
// with the upstream answer's headers, copied into w before the check: a
// tool's result carried in a header (or a Set-Cookie) reaches the revoked
// task with the refusal.
func TestGatewayRefusalCarriesNoUpstreamHeaders(t *testing.T) {
	f := newFixture(t)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	task := "spiffe://example.org/agent/researcher/task/T-41"
	if err := view.Update(time.Now().Add(-time.Minute), []string{task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = view.Check
	started, answer := make(chan struct{}, 1), make(chan struct{})
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
		<-answer
		w.Header().Set("X-Tool-Output", "the secret result")
		w.Header().Set("Set-Cookie", "upstream-session=s3cr3t")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, m.ID)
	}))
	t.Cleanup(up.Close)
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
	<-started
	if err := view.Apply(time.Now(), nil, []string{task}); err != nil {
		t.Fatal(err)
	}
	close(answer) // the tool finishes within the re-check interval
	r := <-done
	if !strings.Contains(r.body, "revoked") {
		t.Skipf("the re-check ended the call first: %s", r.body)
	}
	if h := r.resp.Header.Get("X-Tool-Output") + r.resp.Header.Get("Set-Cookie"); h != "" {
		t.Errorf("the refusal %s carries the upstream answer's headers: X-Tool-Output %q, Set-Cookie %q", r.body, r.resp.Header.Get("X-Tool-Output"), r.resp.Header.Get("Set-Cookie"))
	}
}
