package mcpgw_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/audittest"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
	"github.com/agentid/agentid/verifier/mcpgw"
)

const (
	resource      = "https://files.example.org/mcp"
	otherResource = "https://db.example.org/mcp"
	upstreamKey   = "Bearer upstream-s3cret"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// extraPolicy lets fs:read holders call echo and crash (the stdio test
// server's tools) and get the prompt summarize besides
// examples/mcp/filesystem.
const extraPolicy = `
rule "test-tools" {
  effect = "allow"
  peer {
    scopes_all = ["fs:read"]
  }
  action {
    mcp {
      tools = ["echo", "crash", "slow", "query"]
    }
  }
}

rule "test-prompts" {
  effect = "allow"
  peer {
    scopes_all = ["fs:read"]
  }
  action {
    mcp {
      prompts = ["summarize"]
    }
  }
}
`

// fixture: the policy of examples/mcp/filesystem, a test CA, an audit log
// and a verifier; the gateway and its upstream are added by the tests.
type fixture struct {
	ca  *testca.CA
	v   *verifier.Verifier
	log string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca := testca.New(t, td, time.Now())
	dir := t.TempDir()
	src, err := os.ReadFile("../../examples/mcp/filesystem/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "fs.hcl"), src, 0o600)
	os.WriteFile(filepath.Join(dir, "extra.hcl"), []byte(extraPolicy), 0o600)
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	logPath := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(logPath, audit.Options{Durability: audit.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	v := &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(),
			Audiences: []string{resource, otherResource}}),
		Policy: set,
		Audit:  w,
	}
	return &fixture{ca: ca, v: v, log: logPath}
}

func (f *fixture) token(t testing.TB, task string, scopes []string, aud string, chain ...string) string {
	t.Helper()
	c := svid.Claims{V: 1, Agent: "researcher", Task: task, Model: "openai/gpt-4o", Prompt: svid.PromptDigest(nil),
		Scope: scopes, Principal: "spiffe://example.org/user/alice", Chain: chain,
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	if c.Chain == nil {
		c.Chain = []string{}
	}
	id := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/" + task)
	return f.ca.CreateJWTSVID(id, []string{aud}, c.JWTClaims())
}

func (f *fixture) records(t testing.TB) []audit.Record {
	t.Helper()
	f.v.Audit.Flush()
	return audittest.Decisions(t, f.log)
}

// upstream is a go-sdk MCP server over Streamable HTTP that records the
// headers of every request it gets and the tool calls that reached it.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers []http.Header
	calls   []string
	// slow, when set, is closed by the slow tool's caller to let it end;
	// slowStarted is closed when the slow tool has sent its progress;
	// slowCancelled, when set, when the call was cancelled instead.
	slow, slowStarted, slowCancelled chan struct{}
}

func newUpstream(t testing.TB, opts *mcp.StreamableHTTPOptions, ntools int) *upstream {
	t.Helper()
	u := &upstream{}
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	names := []string{"read_file", "list_directory", "write_file", "move_file", "admin_reset", "echo"}
	for i := len(names); i < ntools; i++ {
		names = append(names, "tool_"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	for _, name := range names {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				u.mu.Lock()
				u.calls = append(u.calls, name+" "+string(req.Params.Arguments))
				u.mu.Unlock()
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok " + name}}}, nil
			})
	}
	s.AddTool(&mcp.Tool{Name: "slow", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: "working"})
			close(u.slowStarted)
			select {
			case <-u.slow:
			case <-ctx.Done():
				if u.slowCancelled != nil {
					close(u.slowCancelled)
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "slow done"}}}, nil
		})
	s.AddResource(&mcp.Resource{Name: "notes", URI: "file:///srv/shared/notes.md"}, readResource)
	s.AddResource(&mcp.Resource{Name: "shadow", URI: "file:///etc/shadow"}, readResource)
	s.AddPrompt(&mcp.Prompt{Name: "exfiltrate"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "x"}}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, opts)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func readResource(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
}

func (u *upstream) toolCalls() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.calls)
}

func (u *upstream) seenHeaders() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.headers)
}

// gateway serves a gateway for cfg (Resource and Log filled in).
func (f *fixture) gateway(t testing.TB, cfg mcpgw.Config) (*mcpgw.Gateway, *httptest.Server) {
	t.Helper()
	cfg.Resource = resource
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g, err := mcpgw.New(f.v, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() { srv.Close(); g.Close() })
	return g, srv
}

func (f *fixture) httpGateway(t testing.TB, up *upstream) *httptest.Server {
	t.Helper()
	u := mustURL(t, up.srv.URL+"/mcp")
	_, srv := f.gateway(t, mcpgw.Config{Upstream: u, UpstreamHeader: "Authorization", UpstreamValue: upstreamKey})
	return srv
}

type bearer struct {
	tok  string
	base http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

func connect(t testing.TB, url, tok string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	cs, err := tryConnect(url, tok, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// clientTransport is the agents' HTTP transport, keeping enough idle
// connections for the parallel benchmark.
var clientTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}()

func tryConnect(url, tok string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	return mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, opts).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: url + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, clientTransport}}}, nil)
}

func toolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	slices.Sort(names)
	return names
}

func call(cs *mcp.ClientSession, name string, args any) (*mcp.CallToolResult, error) {
	return cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
}

func wantRefusal(t testing.TB, err error, code int64, reason, text string) {
	t.Helper()
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		t.Fatalf("want a JSON-RPC error %d, got %v", code, err)
	}
	var ref mcpauth.Refusal
	if err := json.Unmarshal(je.Data, &ref); err != nil {
		t.Fatalf("refusal data %q: %v", je.Data, err)
	}
	if je.Code != code || ref.Code != reason || !strings.Contains(je.Message, text) {
		t.Fatalf("refusal: code %d reason %q message %q; want %d %q containing %q", je.Code, ref.Code, je.Message, code, reason, text)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestGatewayDecidesAndFilters: go-sdk client → gateway → go-sdk server,
// over Streamable HTTP with sessions and SSE answers (protocol
// 2025-11-25, what go-sdk falls back to against a stateful server) and
// stateless with JSON answers (2026-07-28, with Mcp-Method/Mcp-Name).
func TestGatewayDecidesAndFilters(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts *mcp.StreamableHTTPOptions
	}{
		{"stateful-sse", nil},
		{"stateless-json-2026-07-28", &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			f := newFixture(t)
			up := newUpstream(t, mode.opts, 0)
			gw := f.httpGateway(t, up)
			parent := connect(t, gw.URL, f.token(t, "T-41", []string{"fs:read", "fs:write"}, resource), nil)
			child := connect(t, gw.URL, f.token(t, "T-42", []string{"fs:read"}, resource, "spiffe://example.org/agent/planner/task/T-41"), nil)

			if got, want := toolNames(t, parent), []string{"echo", "list_directory", "move_file", "read_file", "slow", "write_file"}; !slices.Equal(got, want) {
				t.Fatalf("parent sees %q, want %q", got, want)
			}
			if got, want := toolNames(t, child), []string{"echo", "list_directory", "read_file", "slow"}; !slices.Equal(got, want) {
				t.Fatalf("delegated child sees %q, want %q", got, want)
			}
			res, err := child.ListResources(context.Background(), nil)
			if err != nil || len(res.Resources) != 1 || res.Resources[0].URI != "file:///srv/shared/notes.md" {
				t.Fatalf("resources: %+v %v", res, err)
			}
			if _, err := child.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "file:///etc/shadow"}); err == nil {
				t.Fatal("resource outside /srv read")
			}
			// no rule allows a prompt: none listed, none got
			if pl, err := child.ListPrompts(context.Background(), nil); err != nil || len(pl.Prompts) != 0 {
				t.Fatalf("prompts %+v %v", pl, err)
			}
			_, err = child.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "exfiltrate"})
			wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
			if _, err := call(child, "read_file", map[string]any{"path": "/srv/shared/notes.md"}); err != nil {
				t.Fatalf("read allowed: %v", err)
			}
			if _, err := call(parent, "write_file", map[string]any{"path": "/srv/agents/T-41/out.md"}); err != nil {
				t.Fatalf("write in the task's directory: %v", err)
			}
			_, err = call(parent, "write_file", map[string]any{"path": "/etc/passwd"})
			wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-write-outside-task (fs.hcl:")
			_, err = call(parent, "admin_reset", map[string]any{})
			wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
			// a tool the upstream does not have
			_, err = call(parent, "delete_everything", map[string]any{})
			wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", `"delete_everything" is not a tool of the upstream MCP server`)
			// case-variant argument keys: refused at the HTTP layer (400), as
			// mcpauth.Handler does; the session goes on
			_, err = call(parent, "write_file", json.RawMessage(`{"path":"/srv/agents/T-41/a","Path":"/etc/passwd"}`))
			if err == nil || !strings.Contains(err.Error(), "Bad Request") {
				t.Fatalf("case-variant argument keys: %v", err)
			}

			// the protocol the client and the upstream spoke through the gateway
			var versions []string
			for _, h := range up.seenHeaders() {
				if v := h.Get("Mcp-Protocol-Version"); v != "" && !slices.Contains(versions, v) {
					versions = append(versions, v)
				}
				if h.Get("Mcp-Protocol-Version") == "2026-07-28" && h.Get("Mcp-Method") == "" {
					t.Fatalf("a 2026-07-28 request without Mcp-Method reached the upstream: %v", h)
				}
			}
			// stateful: server/discover at 2026-07-28 is refused, the session
			// is 2025-11-25; stateless: everything is 2026-07-28
			want := []string{"2026-07-28", "2025-11-25"}
			if mode.opts != nil {
				want = want[:1]
			}
			if !slices.Equal(versions, want) {
				t.Fatalf("protocol versions upstream %q, want %q", versions, want)
			}
			wantCalls := []string{`read_file {"path":"/srv/shared/notes.md"}`, `write_file {"path":"/srv/agents/T-41/out.md"}`}
			if got := up.toolCalls(); !slices.Equal(got, wantCalls) {
				t.Fatalf("calls that reached the upstream: %q, want %q", got, wantCalls)
			}
			recs := f.records(t)
			var names []string
			for _, r := range recs {
				if r.Frontend != mcpgw.Frontend || r.Action == nil {
					t.Fatalf("record %+v", r)
				}
				names = append(names, r.Decision+" "+r.Action.Kind+" "+r.Action.Name)
			}
			// the last: a message that cannot be read is recorded as the POST it was
			wantRecs := []string{"deny mcp file:///etc/shadow", "deny mcp exfiltrate", "allow mcp read_file", "allow mcp write_file", "deny mcp write_file",
				"deny mcp admin_reset", "deny mcp delete_everything", "deny http "}
			if !slices.Equal(names, wantRecs) {
				t.Fatalf("audited decisions %q, want %q", names, wantRecs)
			}
		})
	}
}

// post sends one raw MCP POST through the gateway.
func post(t testing.TB, url, tok, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestGatewayRefusesBadInput: each malformed request is refused with a
// clear error before the upstream sees it, and audited.
func TestGatewayRefusesBadInput(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}, 0)
	gw := f.httpGateway(t, up)
	tok := f.token(t, "T-41", []string{"fs:read", "fs:write"}, resource)
	v26 := []string{"Mcp-Protocol-Version", "2026-07-28"}
	for _, tc := range []struct {
		name, body string
		headers    []string
		status     int
		want       string
	}{
		{"case-variant keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","Name":"write_file"}}`, nil, 400, `keys "name" and "Name" are the same key to case-insensitive readers`},
		{"duplicate keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"write_file"}}`, nil, 400, "duplicate"},
		{"duplicate argument keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/srv/agents/T-41/a","path":"/etc/passwd"}}}`, nil, 400, "duplicate"},
		{"arguments not JSON", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":/srv/x}}}`, nil, 400, "MCP body"},
		{"arguments a string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":"{\"path\":\"/srv/x\"}"}}`, nil, 400, `"arguments" must be an object`},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}]`, nil, 400, "batches are refused"},
		{"Mcp-Name disagrees", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/x"}}}`,
			append(v26, "Mcp-Method", "tools/call", "Mcp-Name", "read_file"), 400, `Mcp-Name: header "read_file" disagrees with the body's "write_file"`},
		{"Mcp-Method disagrees", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
			append(v26, "Mcp-Method", "tools/list", "Mcp-Name", "read_file"), 400, "Mcp-Method"},
		{"Mcp-Method missing from 2026-07-28", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`, v26, 400, "Mcp-Method: required"},
		{"oversize", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"p":"` + strings.Repeat("a", verifier.MaxMCPBody) + `"}}}`, nil, 413, "exceed"},
		{"charset utf-7", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
			[]string{"Content-Type", "application/json; charset=utf-7"}, 415, `Content-Type: charset "utf-7" is refused`},
		{"malformed Content-Type", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}`,
			[]string{"Content-Type", "application/json; charset"}, 415, "Content-Type: \"application/json; charset\" cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, gw.URL, tok, tc.body, tc.headers...)
			var msg struct {
				JSONRPC string
				Error   struct{ Message string }
			}
			json.Unmarshal([]byte(body), &msg)
			if resp.StatusCode != tc.status || !strings.Contains(msg.Error.Message, tc.want) || msg.JSONRPC != "2.0" {
				t.Fatalf("%d %s; want %d with %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	if calls := up.toolCalls(); len(calls) != 0 {
		t.Fatalf("calls reached the upstream: %q", calls)
	}
	recs := f.records(t)
	if len(recs) != 12 {
		t.Fatalf("%d audit records, want 12", len(recs))
	}
	for _, r := range recs {
		if r.Decision != "deny" || r.Frontend != mcpgw.Frontend || r.Peer != "spiffe://example.org/agent/researcher/task/T-41" {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestGatewayAudience: a token for another audience, a bearer reused from
// another MCP server, none at all: 401 with the RFC 9728 challenge; the
// upstream never hears of them.
func TestGatewayAudience(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	gw := f.httpGateway(t, up)
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	meta := `resource_metadata="https://files.example.org/.well-known/oauth-protected-resource/mcp"`

	resp, _ := post(t, gw.URL, "", initMsg)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer "+meta {
		t.Fatalf("no credential: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// a bearer the agent got for the database MCP server, which this
	// verifier also serves (its Authenticator accepts that audience)
	resp, body := post(t, gw.URL, f.token(t, "T-41", []string{"fs:read"}, otherResource), initMsg)
	if h := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(h, `error="invalid_token"`) || !strings.Contains(h, meta) || !strings.Contains(body, "wrong_audience") {
		t.Fatalf("bearer of another MCP server: %d %q %s", resp.StatusCode, h, body)
	}
	resp, body = post(t, gw.URL, f.token(t, "T-41", []string{"fs:read"}, "https://evil.example.net/mcp"), initMsg)
	if resp.StatusCode != 401 || !strings.Contains(body, "wrong_audience") {
		t.Fatalf("token for another audience: %d %s", resp.StatusCode, body)
	}
	if _, err := tryConnect(gw.URL, f.token(t, "T-41", []string{"fs:read"}, otherResource), nil); err == nil {
		t.Fatal("go-sdk client connected with another server's bearer")
	}
	if n := len(up.seenHeaders()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	// RFC 9728 metadata
	mresp, err := http.Get(gw.URL + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.NewDecoder(mresp.Body).Decode(&m)
	mresp.Body.Close()
	if m["resource"] != resource {
		t.Fatalf("metadata %v", m)
	}
	recs := f.records(t)
	if len(recs) != 5 { // go-sdk's client tries server/discover, then initialize
		t.Fatalf("%d audit records of the refused credentials, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Decision != "deny" || r.Frontend != mcpgw.Frontend {
			t.Fatalf("record %+v", r)
		}
	}
}

// TestGatewayCredentials: the agent's JWT-SVID never reaches the upstream
// (no Authorization of its own, not in any header); the configured
// upstream credential does, on every request.
func TestGatewayCredentials(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	gw := f.httpGateway(t, up)
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	cs := connect(t, gw.URL, tok, nil)
	toolNames(t, cs)
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/a"}); err != nil {
		t.Fatal(err)
	}
	cs.Close()
	hs := up.seenHeaders()
	if len(hs) < 4 {
		t.Fatalf("the upstream saw %d requests", len(hs))
	}
	for _, h := range hs {
		if got := h.Values("Authorization"); len(got) != 1 || got[0] != upstreamKey {
			t.Fatalf("Authorization upstream %q, want only the injected %q", got, upstreamKey)
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, tok) || strings.Contains(v, tok[strings.LastIndexByte(tok, '.')+1:]) {
					t.Fatalf("the agent's token reached the upstream in %s", k)
				}
			}
		}
		if h.Get("X-Agentid-Spiffe-Id") != "spiffe://example.org/agent/researcher/task/T-41" {
			t.Fatalf("identity headers upstream: %v", h)
		}
	}
}

// TestGatewaySessions: sessions pass through (Mcp-Session-Id from the
// upstream, DELETE on close), and a session belongs to the task that
// opened it: another task presenting its id gets 404.
func TestGatewaySessions(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	gw := f.httpGateway(t, up)
	tokA := f.token(t, "T-41", []string{"fs:read"}, resource)
	tokB := f.token(t, "T-43", []string{"fs:read"}, resource)
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	resp, body := post(t, gw.URL, tokA, initMsg)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("initialize: %d %q %s", resp.StatusCode, sid, body)
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	hdr := []string{"Mcp-Session-Id", sid, "Mcp-Protocol-Version", "2025-06-18"}
	post(t, gw.URL, tokA, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr...)
	if resp, body := post(t, gw.URL, tokA, list, hdr...); resp.StatusCode != 200 || !strings.Contains(body, "read_file") {
		t.Fatalf("owner's list: %d %s", resp.StatusCode, body)
	}
	if resp, body := post(t, gw.URL, tokB, list, hdr...); resp.StatusCode != 404 {
		t.Fatalf("another task in the session: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, gw.URL, tokA, list, "Mcp-Session-Id", "made-up", "Mcp-Protocol-Version", "2025-06-18"); resp.StatusCode != 404 {
		t.Fatalf("unknown session: %d", resp.StatusCode)
	}
	// two session ids: the gateway would check one and the upstream might
	// serve the other
	req2, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(list))
	req2.Header.Set("Authorization", "Bearer "+tokB)
	req2.Header.Set("Content-Type", "application/json")
	req2.Header.Set("Accept", "application/json, text/event-stream")
	respB, _ := post(t, gw.URL, tokB, initMsg)
	req2.Header["Mcp-Session-Id"] = []string{respB.Header.Get("Mcp-Session-Id"), sid} // its own, then A's
	if resp, err := http.DefaultClient.Do(req2); err != nil || resp.StatusCode != 400 {
		t.Fatalf("two Mcp-Session-Id headers: %v %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest("DELETE", gw.URL+"/mcp", nil)
	req.Header.Set("Authorization", "Bearer "+tokB)
	req.Header.Set("Mcp-Session-Id", sid)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 404 {
		t.Fatalf("another task deleting the session: %v %v", resp.StatusCode, err)
	}
	req.Header.Set("Authorization", "Bearer "+tokA)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("owner deleting the session: %v %v", resp, err)
	}
	if resp, _ := post(t, gw.URL, tokA, list, hdr...); resp.StatusCode != 404 {
		t.Fatalf("deleted session: %d", resp.StatusCode)
	}
	// a whole go-sdk session through the gateway ends with its DELETE
	cs := connect(t, gw.URL, tokA, nil)
	toolNames(t, cs)
	cs.Close()
	var deletes int
	for _, h := range up.seenHeaders() {
		if h.Get("Mcp-Session-Id") != "" && h.Get("Content-Type") == "" {
			deletes++
		}
	}
	if deletes < 2 {
		t.Fatalf("%d DELETE or GET requests reached the upstream, want the two session ends at least", deletes)
	}
}

// TestGatewayUpstreamDiesMidStream: the upstream's connection breaks while
// a call's SSE answer is streaming (after a log notification went
// through): the call fails with a JSON-RPC error, and the next call works.
func TestGatewayUpstreamDiesMidStream(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	up.slow, up.slowStarted = make(chan struct{}), make(chan struct{})
	gw := f.httpGateway(t, up)
	logged := make(chan struct{}, 1)
	cs := connect(t, gw.URL, f.token(t, "T-41", []string{"fs:read"}, resource), &mcp.ClientOptions{
		LoggingMessageHandler: func(context.Context, *mcp.LoggingMessageRequest) { logged <- struct{}{} }})
	if err := cs.SetLoggingLevel(context.Background(), &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	toolNames(t, cs)
	done := make(chan error, 1)
	go func() {
		_, err := call(cs, "slow", map[string]any{})
		done <- err
	}()
	<-logged // the SSE stream of the call is open, through the gateway
	up.srv.CloseClientConnections()
	err := <-done
	var je *jsonrpc.Error
	if !errors.As(err, &je) || !strings.Contains(je.Message, "the upstream MCP server's stream broke") {
		t.Fatalf("call in flight: %v", err)
	}
	close(up.slow)
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/a"}); err != nil {
		t.Fatalf("the next call: %v", err)
	}
}

// TestGatewayUpstreamRestarts: while the upstream is down a call fails
// with a JSON-RPC error naming the fault and the client's session goes
// on; once it is back (stateless, 2026-07-28), the next call works.
func TestGatewayUpstreamRestarts(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}, 0)
	addr := up.srv.Listener.Addr().String()
	gw := f.httpGateway(t, up)
	cs := connect(t, gw.URL, f.token(t, "T-41", []string{"fs:read"}, resource), nil)
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/a"}); err != nil {
		t.Fatal(err)
	}
	handler := up.srv.Config.Handler
	up.srv.Close()
	_, err := call(cs, "read_file", map[string]any{"path": "/srv/a"})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpgw.CodeUpstream || !strings.Contains(je.Message, "the upstream MCP server cannot be reached") {
		t.Fatalf("call while the upstream is down: %v", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	defer srv.Close()
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/b"}); err != nil {
		t.Fatalf("call once the upstream is back: %v", err)
	}
}

// TestGatewayInsufficientScope: a JWT-SVID peer denied for want of a
// scope the policy names gets 403 with the MCP authorization spec's
// challenge, as from mcpauth; a denial more scopes would not lift is a
// JSON-RPC error (HTTP 200).
func TestGatewayInsufficientScope(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}, 0)
	gw := f.httpGateway(t, up)
	readOnly := f.token(t, "T-42", []string{"fs:read"}, resource)
	call := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/srv/agents/T-42/out.md"}}}`
	resp, body := post(t, gw.URL, readOnly, call)
	h := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 403 || !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="fs:write"`) ||
		!strings.Contains(h, `resource_metadata="https://files.example.org/.well-known/oauth-protected-resource/mcp"`) || !strings.Contains(body, `"id":3`) {
		t.Fatalf("403: %d %q %s", resp.StatusCode, h, body)
	}
	resp, body = post(t, gw.URL, f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource),
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/passwd"}}}`)
	if resp.StatusCode != 200 || !strings.Contains(body, "fs-write-outside-task") || !strings.Contains(body, "-32031") {
		t.Fatalf("denied call: %d %s", resp.StatusCode, body)
	}
	if calls := up.toolCalls(); len(calls) != 0 {
		t.Fatalf("calls reached the upstream: %q", calls)
	}
}
