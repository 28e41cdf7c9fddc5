package mcpauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
)

const (
	resource      = "https://files.example.org/mcp"
	otherResource = "https://db.example.org/mcp"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// fixture: a go-sdk filesystem-like server behind mcpauth, the policy of
// examples/mcp/filesystem, a test CA and an audit log.
type fixture struct {
	ca     *testca.CA
	v      *verifier.Verifier
	a      *mcpauth.Auth
	server *mcp.Server
	log    string
	calls  []string // tool calls that reached their handler
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ca := testca.New(t, td, time.Now())
	set, diags := policies.Load("../../examples/mcp/filesystem")
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
	f := &fixture{ca: ca, v: v, log: logPath}
	f.server = mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	for _, name := range []string{"read_file", "list_directory", "write_file", "move_file", "admin_reset"} {
		f.server.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				f.calls = append(f.calls, name+" "+string(req.Params.Arguments))
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok " + name}}}, nil
			})
	}
	f.server.AddResource(&mcp.Resource{Name: "notes", URI: "file:///srv/shared/notes.md"}, readResource)
	f.server.AddResource(&mcp.Resource{Name: "shadow", URI: "file:///etc/shadow"}, readResource)
	f.a, err = mcpauth.New(v, mcpauth.Options{Resource: resource, ScopesSupported: []string{"fs:read", "fs:write"}})
	if err != nil {
		t.Fatal(err)
	}
	f.a.Install(f.server)
	return f
}

func readResource(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "x"}}}, nil
}

// task returns a JWT-SVID of task T-<n> with scopes, for audience aud,
// delegated by chain.
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

// connect opens a go-sdk client session over in-memory transports, the
// server session's credential being cred.
func (f *fixture) connect(t testing.TB, cred verifier.Credential) *mcp.ClientSession {
	t.Helper()
	cs, err := f.tryConnect(t, cred)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func (f *fixture) tryConnect(t testing.TB, cred verifier.Credential) (*mcp.ClientSession, error) {
	t.Helper()
	ctx := context.Background()
	a, err := mcpauth.New(f.v, mcpauth.Options{Resource: resource,
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) { return cred, true }})
	if err != nil {
		t.Fatal(err)
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	for _, name := range []string{"read_file", "list_directory", "write_file", "move_file", "admin_reset"} {
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				f.calls = append(f.calls, name+" "+string(req.Params.Arguments))
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok " + name}}}, nil
			})
	}
	srv.AddResource(&mcp.Resource{Name: "notes", URI: "file:///srv/shared/notes.md"}, readResource)
	srv.AddResource(&mcp.Resource{Name: "shadow", URI: "file:///etc/shadow"}, readResource)
	a.Install(srv)
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

func jwtCred(tok string) verifier.Credential {
	return verifier.Credential{Kind: verifier.CredentialJWT, Value: tok}
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
	return names
}

func call(cs *mcp.ClientSession, name string, args any) (*mcp.CallToolResult, error) {
	return cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
}

// wantRefusal checks that err is the JSON-RPC error of a refusal with code
// and reason code, whose message contains text.
func wantRefusal(t testing.TB, err error, code int64, reason, text string) *mcpauth.Refusal {
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
	return &ref
}

func (f *fixture) records(t testing.TB) []audit.Record {
	t.Helper()
	f.v.Audit.Flush()
	return audittest.Decisions(t, f.log)
}

func TestCallsDecidedWithArguments(t *testing.T) {
	f := newFixture(t)
	cs := f.connect(t, jwtCred(f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)))

	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/shared/notes.md"}); err != nil {
		t.Fatalf("read allowed: %v", err)
	}
	if _, err := call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/out.md", "content": "x"}); err != nil {
		t.Fatalf("write in the task's directory: %v", err)
	}
	_, err := call(cs, "write_file", map[string]any{"path": "/srv/agents/T-7/out.md", "content": "x"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-write-outside-task (policy.hcl:")
	_, err = call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/../../../etc/cron.d/x"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-dot-segments")
	_, err = call(cs, "move_file", map[string]any{"source": "/srv/agents/T-42/a", "destination": "/srv/shared/a"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-write-outside-task")
	// The same key twice in other cases: a Go tool reading "Path"
	// case-insensitively would write elsewhere than the policy read.
	_, err = call(cs, "write_file", json.RawMessage(`{"path":"/srv/agents/T-42/a","Path":"/etc/passwd"}`))
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", `"path" and "Path"`)
	_, err = call(cs, "write_file", json.RawMessage(`{"path":"/srv/agents/T-42/a","path":"/etc/passwd"}`))
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "duplicate")
	_, err = call(cs, "write_file", "not an object")
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", "not a JSON object")
	_, err = call(cs, "delete_everything", map[string]any{})
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", `"delete_everything" is not a tool of this server`)
	_, err = call(cs, "admin_reset", map[string]any{})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")

	want := []string{`read_file {"path":"/srv/shared/notes.md"}`, `write_file {"content":"x","path":"/srv/agents/T-42/out.md"}`}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls that reached the tools: %q, want %q", f.calls, want)
	}
	// every decision is audited, refusals included, naming the peer
	recs := f.records(t)
	if len(recs) != 10 {
		t.Fatalf("%d decision records, want 10", len(recs))
	}
	for _, r := range recs {
		if r.Frontend != "mcp" || r.Peer != "spiffe://example.org/agent/researcher/task/T-42" || r.Action == nil || r.Action.Kind != "mcp" {
			t.Fatalf("record %+v", r)
		}
	}
	if r := recs[2]; r.Decision != "deny" || r.Action.Name != "write_file" || !slices.Contains(r.Rules, "fs-write-outside-task (policy.hcl:54)") {
		t.Fatalf("denial record %+v", r)
	}
	if r := recs[8]; r.Decision != "deny" || !strings.Contains(r.Reason, "not a tool of this server") {
		t.Fatalf("unknown tool record %+v", r)
	}
}

func TestListsFiltered(t *testing.T) {
	f := newFixture(t)
	parent := f.connect(t, jwtCred(f.token(t, "T-41", []string{"fs:read", "fs:write"}, resource)))
	child := f.connect(t, jwtCred(f.token(t, "T-42", []string{"fs:read"}, resource, "spiffe://example.org/agent/planner/task/T-41")))

	// write tools depend on the arguments: shown to a task that may write
	// somewhere; admin_reset is allowed by no rule: never shown.
	if got, want := toolNames(t, parent), []string{"list_directory", "move_file", "read_file", "write_file"}; !slices.Equal(sorted(got), want) {
		t.Fatalf("parent sees %q, want %q", got, want)
	}
	if got, want := toolNames(t, child), []string{"list_directory", "read_file"}; !slices.Equal(sorted(got), want) {
		t.Fatalf("delegated child sees %q, want %q", got, want)
	}
	res, err := child.ListResources(context.Background(), nil)
	if err != nil || len(res.Resources) != 1 || res.Resources[0].URI != "file:///srv/shared/notes.md" {
		t.Fatalf("resources: %+v %v", res, err)
	}
	if _, err := child.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "file:///srv/shared/notes.md"}); err != nil {
		t.Fatalf("allowed resource: %v", err)
	}
	_, err = child.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "file:///etc/shadow"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestTokenAudience(t *testing.T) {
	f := newFixture(t)
	// A JWT-SVID minted for the database server, which the same
	// Authenticator accepts: refused by the filesystem server.
	// Refused from initialize on.
	_, err := f.tryConnect(t, jwtCred(f.token(t, "T-42", []string{"fs:read"}, otherResource)))
	wantRefusal(t, err, mcpauth.CodeUnauthenticated, "wrong_audience", "does not name this resource")
	// A token for an audience no server here accepts.
	_, err = f.tryConnect(t, jwtCred(f.token(t, "T-42", []string{"fs:read"}, "https://evil.example.net/mcp")))
	wantRefusal(t, err, mcpauth.CodeUnauthenticated, "wrong_audience", "names none of")
	// No credential at all.
	_, err = f.tryConnect(t, verifier.Credential{})
	wantRefusal(t, err, mcpauth.CodeUnauthenticated, "no_credential", "")
	if len(f.calls) != 0 {
		t.Fatalf("calls reached the tools: %q", f.calls)
	}
	// VerifyToken, for auth.RequireBearerToken, refuses them too.
	for _, tok := range []string{f.token(t, "T-42", nil, otherResource), "not-a-jwt"} {
		if _, err := f.a.VerifyToken(context.Background(), tok, nil); err == nil {
			t.Fatalf("VerifyToken accepted %q", tok)
		}
	}
	ti, err := f.a.VerifyToken(context.Background(), f.token(t, "T-42", []string{"fs:read"}, resource), nil)
	if err != nil || ti.UserID != "spiffe://example.org/agent/researcher/task/T-42" || !slices.Equal(ti.Scopes, []string{"fs:read"}) ||
		ti.Extra[mcpauth.ExtraTask] != "T-42" || ti.Expiration.IsZero() {
		t.Fatalf("VerifyToken: %+v %v", ti, err)
	}
}

// httpServer serves the fixture's server through Handler.
func (f *fixture) httpServer(t testing.TB, stateless bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/mcp", f.a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server },
		&mcp.StreamableHTTPOptions{Stateless: stateless, JSONResponse: stateless})))
	mux.Handle(f.a.MetadataPath(), f.a.MetadataHandler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
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

func TestHTTP(t *testing.T) {
	f := newFixture(t)
	srv := f.httpServer(t, false)
	ctx := context.Background()
	tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if got := toolNames(t, cs); len(got) != 4 {
		t.Fatalf("tools %q", got)
	}
	if _, err := call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/out.md"}); err != nil {
		t.Fatal(err)
	}
	_, err = call(cs, "write_file", map[string]any{"path": "/etc/passwd"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-write-outside-task")
	// each call decided once, by Handler (the middleware took its decision)
	var n int
	for _, r := range f.records(t) {
		if r.Action.Name == "write_file" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d records of the two write_file calls, want 2", n)
	}

	// 401 with the resource metadata; the metadata itself (RFC 9728)
	post := func(tok, body string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	resp := post("", initMsg)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="`+strings.TrimPrefix(srv.URL, "")[:0]+`https://files.example.org/.well-known/oauth-protected-resource/mcp"` {
		t.Fatalf("no credential: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp = post(f.token(t, "T-42", nil, otherResource), initMsg)
	if h := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(h, `error="invalid_token"`) || !strings.Contains(h, "resource_metadata=") {
		t.Fatalf("bearer of another server: %d %q", resp.StatusCode, h)
	}
	mresp, err := http.Get(srv.URL + f.a.MetadataPath())
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	json.NewDecoder(mresp.Body).Decode(&meta)
	mresp.Body.Close()
	if meta["resource"] != resource || meta["bearer_methods_supported"] == nil {
		t.Fatalf("metadata %v", meta)
	}
	// smuggling at the HTTP layer: case-variant keys are refused before go-sdk reads them
	resp = post(tok, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file","Name":"write_file"}}`)
	if resp.StatusCode != 400 {
		t.Fatalf("case-variant keys: %d", resp.StatusCode)
	}
}

func TestHTTPInsufficientScope(t *testing.T) {
	f := newFixture(t)
	srv := f.httpServer(t, true)
	// the tool list is known once it has been listed
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	toolNames(t, cs)
	_, err = call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/out.md"})
	if err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("write without fs:write: %v", err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/srv/agents/T-42/out.md"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 403 || !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="fs:write"`) ||
		!strings.Contains(h, `resource_metadata="https://files.example.org/.well-known/oauth-protected-resource/mcp"`) {
		t.Fatalf("403: %d %q %s", resp.StatusCode, h, body)
	}
	if !strings.Contains(string(body), `"id":3`) || !strings.Contains(string(body), "-32031") {
		t.Fatalf("403 body %s", body)
	}
	// outside the task's directory, more scopes would not help: an MCP error
	tok2 := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	req, _ = http.NewRequest("POST", srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/etc/passwd"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok2)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "fs-write-outside-task") || !strings.Contains(string(body), "-32031") {
		t.Fatalf("denied call: %d %s", resp.StatusCode, body)
	}
}

// A condition on the request's source address decides the same whether
// Handler or the middleware decides the call (the middleware decides when
// the tool names are not known yet, e.g. the first call after a connect).
// Found by review: the middleware's request had no source, so a deny on
// request.source did not match there.
func TestSourceConditionSameOnEveryPath(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.hcl"), []byte(`
rule "tasks" {
  effect = "allow"
  peer {
    task_required = true
  }
}
rule "no-loopback-writes" {
  effect    = "deny"
  action {
    mcp {
      tools = ["write_file"]
    }
  }
  condition = request.source == "127.0.0.1"
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	f.v.Policy = set
	srv := f.httpServer(t, false)
	tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	// No tools/list first: the tool names are not known, the middleware decides.
	_, err = call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/x"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "no-loopback-writes")
	toolNames(t, cs) // now Handler decides
	_, err = call(cs, "write_file", map[string]any{"path": "/srv/agents/T-42/x"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "no-loopback-writes")
}
