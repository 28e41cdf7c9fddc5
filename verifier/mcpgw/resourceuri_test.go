package mcpgw_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// dottedURIs leave file:///srv/** for a server that resolves them (url.Parse,
// then path.Clean).
var dottedURIs = []string{"file:///srv/../etc/shadow", "file:///srv/%2e%2e/etc/shadow", "file:///srv/x/../../etc/shadow",
	"file:///srv/shared/..%2F..%2Fetc/shadow", "file:///srv//../etc/shadow"}

// TestGatewayResourceURIDotSegments (R4): go-sdk client → gateway → go-sdk
// server whose template file:///{+path} reads url.Parse(uri).Path after
// path.Clean (confined to its root), with the shipped
// examples/mcp/filesystem policy (resources = ["file:///srv/**"]): the
// dotted and encoded URIs that the server resolves to /etc/shadow are
// refused as bad_request (resources/read and resources/subscribe) and never
// reach it; the canonical URI under /srv is served.
func TestGatewayResourceURIDotSegments(t *testing.T) {
	f := newFixture(t)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "srv", "shared"), 0o755)
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "srv", "shared", "notes.md"), []byte("notes"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "shadow"), []byte("SECRET-SHADOW"), 0o644)
	var mu sync.Mutex
	var reached []string
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler: func(_ context.Context, req *mcp.SubscribeRequest) error {
			mu.Lock()
			reached = append(reached, "subscribe "+req.Params.URI)
			mu.Unlock()
			return nil
		},
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResourceTemplate(&mcp.ResourceTemplate{Name: "files", URITemplate: "file:///{+path}"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			mu.Lock()
			reached = append(reached, "read "+req.Params.URI)
			mu.Unlock()
			u, err := url.Parse(req.Params.URI)
			if err != nil {
				return nil, err
			}
			b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path.Clean("/"+u.Path))))
			if err != nil {
				return nil, mcp.ResourceNotFoundError(req.Params.URI)
			}
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: string(b)}}}, nil
		})
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	cs := connect(t, gw.URL, f.token(t, "T-42", []string{"fs:read"}, resource), nil)
	ctx := context.Background()

	res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "file:///srv/shared/notes.md"})
	if err != nil || res.Contents[0].Text != "notes" {
		t.Fatalf("file:///srv/shared/notes.md: %v %v", res, err)
	}
	mu.Lock()
	reached = nil
	mu.Unlock()
	for _, uri := range dottedURIs {
		res, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
		if err == nil {
			t.Errorf("resources/read %s: served %q", uri, res.Contents[0].Text)
			continue
		}
		wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "resource URI")
		wantRefusal(t, cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}), jsonrpc.CodeInvalidParams, "bad_request", "resource URI")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reached) != 0 {
		t.Errorf("reached the upstream: %q", reached)
	}
}

// TestGatewayResourceURIDottedNotifications (R4): the upstream's
// notifications/resources/updated naming a dotted URI (which a client
// resolving it reads as /etc/shadow) is kept from the agent and audited
// as bad_request; a subscriptions/listen naming one is refused before the
// upstream sees it, as is a completion ref of a dotted template (400 with
// the JSON-RPC error -32602, as the gateway answers a malformed message).
func TestGatewayResourceURIDottedNotifications(t *testing.T) {
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
		reached = append(reached, r.Method+" "+m.Method)
		mu.Unlock()
		w.Header().Set("Mcp-Session-Id", "s-1")
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(m.ID)+`,"result":{}}`)
		default:
			w.Header().Set("Content-Type", "text/event-stream")
			for _, uri := range dottedURIs {
				io.WriteString(w, `data: {"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"`+uri+`"}}`+"\n\n")
			}
			io.WriteString(w, `data: {"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///srv/shared/notes.md"}}`+"\n\n")
		}
	}))
	t.Cleanup(up.Close)
	g, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	resp, _ := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	resp, body := rawReq(t, "GET", gw.URL, tok, sid, "")
	if resp.StatusCode != 200 || !strings.Contains(body, "file:///srv/shared/notes.md") {
		t.Fatalf("GET: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "etc/shadow") {
		t.Errorf("a dotted update reached the agent: %s", body)
	}
	if n := g.SuppressedNotifications(); n != int64(len(dottedURIs)) {
		t.Errorf("SuppressedNotifications = %d, want %d", n, len(dottedURIs))
	}
	malformed := 0
	for _, r := range f.records(t) {
		if r.Frontend == mcpgw.FrontendNotification && r.Decision == "deny" && strings.Contains(r.Reason, "bad_request") {
			malformed++
		}
	}
	if malformed != len(dottedURIs) {
		t.Errorf("%d audited bad_request notification records, want %d", malformed, len(dottedURIs))
	}

	mu.Lock()
	reached = nil
	mu.Unlock()
	for _, uri := range dottedURIs {
		resp, body := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["`+uri+`"]},`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`,
			"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "subscriptions/listen")
		if resp.StatusCode != 400 || !strings.Contains(body, "-32602") || !strings.Contains(body, "bad_request") {
			t.Errorf("subscriptions/listen %s: %d %s", uri, resp.StatusCode, body)
		}
		resp, body = rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"`+uri+`{x}"},"argument":{"name":"x","value":"s"}}}`)
		if resp.StatusCode != 400 || !strings.Contains(body, "-32602") || !strings.Contains(body, "bad_request") {
			t.Errorf("completion/complete of %s{x}: %d %s", uri, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reached) != 0 {
		t.Errorf("reached the upstream: %q", reached)
	}
}
