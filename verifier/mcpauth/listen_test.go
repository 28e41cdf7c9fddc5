package mcpauth_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

func listenRequest(uris ...string) *mcp.SubscriptionsListenRequest {
	return &mcp.SubscriptionsListenRequest{Params: &mcp.SubscriptionsListenParams{
		Notifications: &mcp.NotificationSubscriptions{ToolsListChanged: true, ResourceSubscriptions: uris}}}
}

// TestSubscriptionsListenDecided: from protocol 2026-07-28 go-sdk's
// client subscribes with subscriptions/listen (SEP-2575), which replaced
// resources/subscribe, and does not wait for its answer; mcpauth's
// middleware decides it as resources/subscribe of each URI in
// notifications.resourceSubscriptions, as the gateway does: a resource the
// task may not read is refused naming the rule, a dotted URI as
// bad_request, before the server subscribes; each decision is audited. A
// readable one, and a listen without resource subscriptions, pass.
func TestSubscriptionsListenDecided(t *testing.T) {
	f := newFixture(t)
	cred := jwtCred(f.token(t, "T-42", []string{"fs:read"}, resource))
	a, err := mcpauth.New(f.v, mcpauth.Options{Resource: resource,
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) { return cred, true }})
	if err != nil {
		t.Fatal(err)
	}
	var reached []string
	mw := a.Middleware()(func(_ context.Context, method string, req mcp.Request) (mcp.Result, error) {
		reached = append(reached, strings.Join(req.GetParams().(*mcp.SubscriptionsListenParams).Notifications.ResourceSubscriptions, ","))
		return &mcp.SubscriptionsListenResult{}, nil
	})
	ctx := context.Background()
	_, err = mw(ctx, "subscriptions/listen", listenRequest("file:///srv/shared/notes.md", "file:///etc/shadow"))
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
	_, err = mw(ctx, "subscriptions/listen", listenRequest("file:///srv/../etc/shadow"))
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "resource URI")
	_, err = mw(ctx, "subscriptions/listen", listenRequest(""))
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "MCP resource URI: empty")
	for _, uris := range [][]string{{"file:///srv/shared/notes.md"}, nil} {
		if _, err := mw(ctx, "subscriptions/listen", listenRequest(uris...)); err != nil {
			t.Fatalf("listen %q: %v", uris, err)
		}
	}
	if want := "file:///srv/shared/notes.md,"; strings.Join(reached, ",") != want {
		t.Fatalf("listens that reached the server: %q, want %q", reached, want)
	}
	var denied, bad, allowed int
	for _, r := range f.records(t) {
		switch {
		case r.Decision == "deny" && r.Action.Name == "file:///etc/shadow" && r.Action.Method == "resources/subscribe":
			denied++
		case r.Decision == "deny" && strings.Contains(r.Reason, "bad_request"):
			bad++
		case r.Decision == "allow" && r.Action.Name == "file:///srv/shared/notes.md" && r.Action.Method == "resources/subscribe":
			allowed++
		}
	}
	if denied != 1 || bad != 2 || allowed != 2 {
		t.Fatalf("audited: %d denied, %d bad_request, %d allowed; want 1, 2, 2", denied, bad, allowed)
	}
}

// TestSubscriptionsListenDecidedHTTP: the same through Handler and
// go-sdk's stateless Streamable HTTP server: a subscriptions/listen of a
// resource the task may not read is answered with the refusal.
func TestSubscriptionsListenDecidedHTTP(t *testing.T) {
	f := newFixture(t)
	srv := f.httpServer(t, true)
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	for _, tc := range []struct{ uri, want string }{{"file:///etc/shadow", "default deny"}, {"file:///srv/%2e%2e/etc/shadow", "bad_request"}} {
		body := `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["` + tc.uri + `"]},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
		req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "subscriptions/listen")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `"error"`) || !strings.Contains(string(b), tc.want) {
			t.Errorf("listen %s: %d %s", tc.uri, resp.StatusCode, b)
		}
	}
}
