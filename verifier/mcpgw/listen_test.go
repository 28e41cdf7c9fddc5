package mcpgw_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/agentid/agentid/verifier/mcpauth"
	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewaySubscriptionsListenDecided: a 2026-07-28
// subscriptions/listen is decided like resources/subscribe of each URI in
// its resourceSubscriptions (the method that replaced it): one the task may
// not read refuses the request, naming the rule, before the upstream sees
// it; each decision is audited. Without resource subscriptions it passes.
func TestGatewaySubscriptionsListenDecided(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var reached []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage
			Method string
		}
		json.Unmarshal(in, &m)
		mu.Lock()
		reached = append(reached, m.Method)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":1},"notifications":{}}}`+"\n\n")
		io.WriteString(w, `data: {"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"resultType":"complete"}}`+"\n\n")
	}))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	listen := func(notifications string) (*http.Response, string) {
		return rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":`+notifications+`,`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`,
			"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "subscriptions/listen")
	}
	for _, bad := range []string{
		`{"resourceSubscriptions":["file:///srv/shared/notes.md","file:///etc/shadow"]}`,
		`{"toolsListChanged":true,"resourceSubscriptions":["file:///etc/shadow"]}`,
	} {
		resp, body := listen(bad)
		var out struct {
			Error *struct {
				Code    int64
				Message string
			}
		}
		json.Unmarshal([]byte(body), &out)
		if resp.StatusCode != 200 || out.Error == nil || out.Error.Code != mcpauth.CodeForbidden || !strings.Contains(out.Error.Message, "default deny") {
			t.Errorf("listen %s: %d %s", bad, resp.StatusCode, body)
		}
	}
	for _, bad := range []string{`{"resourceSubscriptions":"file:///etc/shadow"}`, `{"resourceSubscriptions":[""]}`, `{"resourceSubscriptions":[1]}`} {
		if resp, body := listen(bad); resp.StatusCode != 200 || !strings.Contains(body, "-32602") {
			t.Errorf("listen %s: %d %s", bad, resp.StatusCode, body)
		}
	}
	for _, good := range []string{`{"toolsListChanged":true}`, `{"resourceSubscriptions":["file:///srv/shared/notes.md"]}`} {
		if resp, body := listen(good); resp.StatusCode != 200 || !strings.Contains(body, `"resultType":"complete"`) {
			t.Errorf("listen %s: %d %s", good, resp.StatusCode, body)
		}
	}
	mu.Lock()
	got := strings.Join(reached, ",")
	mu.Unlock()
	if got != "subscriptions/listen,subscriptions/listen" {
		t.Fatalf("requests that reached the upstream: %s", got)
	}
	var denied int
	for _, r := range f.records(t) {
		if r.Decision == "deny" && r.Action.Method == "resources/subscribe" && r.Action.Name == "file:///etc/shadow" {
			denied++
		}
	}
	if denied != 2 {
		t.Fatalf("%d audited subscription refusals, want 2", denied)
	}
}
