package mcpgw_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// serverMessages is what the hostile upstream of
// TestGatewayResourceUpdatedDecided sends on every stream: updates of a
// resource the task may read and of one it may not (also in spellings
// a case-insensitive client reads differently), and the messages that
// pass whatever they name.
var serverMessages = []string{
	`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///etc/shadow"}}`,
	`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///srv/shared/notes.md"}}`,
	// go-sdk's client (encoding/json) reads the last of uri/URI
	`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///srv/shared/notes.md","URI":"file:///etc/passwd"}}`,
	// a case-insensitive client reads Method; a case-sensitive one, method
	`{"jsonrpc":"2.0","method":"notifications/message","Method":"notifications/resources/updated","params":{"level":"info","data":"x","uri":"file:///etc/group"}}`,
	`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{}}`,
	`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
	`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"working"}}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p1","progress":1}}`,
	`{"jsonrpc":"2.0","id":"s-1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}`,
}

// TestGatewayResourceUpdatedDecided: notifications/resources/updated
// from the upstream, on the GET stream and on a call's SSE stream, reach
// the agent only when the task may read the URI (decided like
// resources/read, front-end mcp_gateway_notification, the suppression
// audited); a notification a case-insensitive client would read as
// another one is dropped; list_changed, logging, progress and the
// server's requests pass.
func TestGatewayResourceUpdatedDecided(t *testing.T) {
	f := newFixture(t)
	events := func(w io.Writer) {
		for _, m := range serverMessages {
			io.WriteString(w, "data: "+m+"\n\n")
		}
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage
			Method string
		}
		json.Unmarshal(in, &m)
		w.Header().Set("Mcp-Session-Id", "s-1")
		switch {
		case r.Method == http.MethodPost && m.Method == "tools/list":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}}]}}`)
		case r.Method == http.MethodPost && m.Method == "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			events(w)
			io.WriteString(w, `data: {"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{"content":[]}}`+"\n\n")
		case r.Method == http.MethodPost:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{}}`)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			events(w)
		}
	}))
	t.Cleanup(up.Close)
	g, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	resp, _ := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")

	check := func(name, body string) {
		t.Helper()
		for _, leak := range []string{"/etc/shadow", "/etc/passwd", "/etc/group", `"params":{}`} {
			if strings.Contains(body, leak) {
				t.Errorf("%s: %s reached the agent: %s", name, leak, body)
			}
		}
		for _, pass := range []string{"file:///srv/shared/notes.md", "notifications/tools/list_changed", `"data":"working"`, "notifications/progress", "sampling/createMessage"} {
			if !strings.Contains(body, pass) {
				t.Errorf("%s: %s did not reach the agent: %s", name, pass, body)
			}
		}
	}
	resp, body := rawReq(t, "GET", gw.URL, tok, sid, "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	check("GET stream", body)
	resp, body = rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/shared/notes.md"}}}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":7`) {
		t.Fatalf("tools/call: %d %s", resp.StatusCode, body)
	}
	check("tools/call stream", body)
	if n := g.SuppressedNotifications(); n != 2*4 {
		t.Errorf("SuppressedNotifications = %d, want 8 (4 per stream)", n)
	}

	var denied, allowed, malformed int
	for _, r := range f.records(t) {
		if r.Frontend != mcpgw.FrontendNotification {
			continue
		}
		switch {
		case r.Decision == "deny" && r.Action.Name == "file:///etc/shadow" && r.Action.Method == "resources/read":
			denied++
		case r.Decision == "allow" && r.Action.Name == "file:///srv/shared/notes.md":
			allowed++
		case r.Decision == "deny" && r.Action.Method == "notifications/resources/updated" && strings.Contains(r.Reason, "bad_request"):
			malformed++
		default:
			t.Errorf("unexpected notification record %+v", r)
		}
	}
	if denied != 2 || allowed != 2 || malformed != 6 {
		t.Fatalf("notification records: %d denied, %d allowed, %d malformed; want 2, 2, 6", denied, allowed, malformed)
	}
}

// TestGatewayResourceUpdatedRealServer: go-sdk's server sends
// notifications/resources/updated to a go-sdk client subscribed through
// the gateway (a resource the task may read): it arrives.
func TestGatewayResourceUpdatedRealServer(t *testing.T) {
	f := newFixture(t)
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResource(&mcp.Resource{Name: "notes", URI: "file:///srv/shared/notes.md"}, readResource)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	got := make(chan string, 4)
	cs := connect(t, gw.URL, f.token(t, "T-42", []string{"fs:read"}, resource), &mcp.ClientOptions{
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			got <- req.Params.URI
		},
	})
	ctx := context.Background()
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "file:///srv/shared/notes.md"}); err != nil {
		t.Fatal(err)
	}
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "file:///etc/shadow"}); err == nil {
		t.Fatal("subscribed to a resource the task may not read")
	}
	if err := s.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "file:///srv/shared/notes.md"}); err != nil {
		t.Fatal(err)
	}
	select {
	case uri := <-got:
		if uri != "file:///srv/shared/notes.md" {
			t.Fatalf("update of %q", uri)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the allowed update never reached the client")
	}
}
