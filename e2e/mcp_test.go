package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/npmtest"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// mcpIssuance: planners hold fs:read and fs:write and delegate
// researchers, who may hold the same scopes at most.
const mcpIssuance = `
agent "planner" {
  models     = ["openai/gpt-4o*"]
  prompts    = ["*"]
  scopes     = ["fs:read", "fs:write", "mcp:read", "mcp:write"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
  max_depth  = 2
}

agent "researcher" {
  models     = ["openai/gpt-4o*"]
  prompts    = ["*"]
  scopes     = ["fs:read", "fs:write", "mcp:read", "mcp:write"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "2h"
  max_depth  = 2
  delegators = ["planner"]
}
`

// mcpTasks are a planner task and a researcher it delegated with fewer
// scopes, created on the real SPIRE through the CLI.
type mcpTasks struct {
	planner, child       string // task files
	plannerID, childID   string // SPIFFE IDs
	plannerTask, childTk string // task names
}

// newMCPTasks creates the planner P-<suffix> with scopes and the
// researcher R-<suffix> delegated by it with childScopes.
func newMCPTasks(s *stack, suffix string, scopes, childScopes []string) mcpTasks {
	s.t.Helper()
	s.policy = filepath.Join(s.dir, "mcp-issuance.hcl")
	writeFile(s.t, s.policy, mcpIssuance)
	tk := mcpTasks{plannerTask: "P-" + suffix, childTk: "R-" + suffix}
	tk.plannerID = "spiffe://example.org/agent/planner/task/" + tk.plannerTask
	tk.childID = "spiffe://example.org/agent/researcher/task/" + tk.childTk
	args := []string{"--model", "openai/gpt-4o", "--prompt-sha256", digest, "--principal", "spiffe://example.org/user/alice", "--ttl", "1h"}
	for _, sc := range scopes {
		args = append(args, "--scope", sc)
	}
	tk.planner = s.createTask("planner", tk.plannerTask, args...)
	args = []string{"--model", "openai/gpt-4o", "--prompt-sha256", digest, "--ttl", "30m", "--parent-task", tk.plannerID}
	for _, sc := range childScopes {
		args = append(args, "--scope", sc)
	}
	tk.child = s.createTask("researcher", tk.childTk, args...)
	return tk
}

// jwtAs returns the JWT-SVID for audience that the task of taskFile gets
// from the Workload API: `spire-agent api fetch jwt` launched as the task
// with `agentid run` (retried while the entry reaches the agent).
func (s *stack) jwtAs(taskFile, audience string) string {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.run("run", "--task-file", taskFile, "--manifest-dir", s.manifestDir, "--",
			filepath.Join(spiretestBin(s.t), "spire-agent"), "api", "fetch", "jwt", "-audience", audience, "-socketPath", s.agent.SocketPath)
		if err == nil {
			// "token(spiffe://…):\n\t<JWT>\nbundle(…):…"
			if lines := strings.Split(out, "\n"); len(lines) > 1 && strings.Count(strings.TrimSpace(lines[1]), ".") == 2 {
				return strings.TrimSpace(lines[1])
			}
			err = fmt.Errorf("unexpected output %q", out)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no JWT-SVID for %s: %v", filepath.Base(taskFile), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// memFiles is the go-sdk MCP server of TestMCPLibraryOnRealSPIRE: the
// filesystem tools of @modelcontextprotocol/server-filesystem over a map.
type memFiles struct {
	mu    sync.Mutex
	files map[string]string
	calls []string // tool calls that reached a handler
}

func (m *memFiles) server() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	tool := func(name string, h func(args map[string]string) (string, error)) {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				var args map[string]string
				if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
					return nil, err
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				m.calls = append(m.calls, name+" "+args["path"])
				text, err := h(args)
				if err != nil {
					return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}, nil
				}
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
			})
	}
	tool("read_file", func(a map[string]string) (string, error) {
		if c, ok := m.files[a["path"]]; ok {
			return c, nil
		}
		return "", errors.New("no such file")
	})
	tool("list_directory", func(a map[string]string) (string, error) {
		var names []string
		for p := range m.files {
			if strings.HasPrefix(p, strings.TrimSuffix(a["path"], "/")+"/") {
				names = append(names, p)
			}
		}
		slices.Sort(names)
		return strings.Join(names, "\n"), nil
	})
	tool("write_file", func(a map[string]string) (string, error) {
		m.files[a["path"]] = a["content"]
		return "wrote " + a["path"], nil
	})
	tool("create_directory", func(a map[string]string) (string, error) { return "created " + a["path"], nil })
	return s
}

// bearerTransport adds the task's JWT-SVID to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestMCPLibraryOnRealSPIRE: a go-sdk MCP server using verifier/mcpauth
// (bundles from the SPIRE Workload API, the example filesystem policy of
// examples/mcp/filesystem) is called over Streamable HTTP with the
// JWT-SVIDs that a planner task and the researcher it delegated get from
// the Workload API, by go-sdk's client and by the TypeScript client of
// examples/mcp/client (@modelcontextprotocol/sdk): reads are allowed,
// writes outside the task's directory are MCP errors naming the deny
// rule, the researcher (fs:read only) sees fewer tools than the planner
// and is refused a write with 403 insufficient_scope, a token minted for
// another audience is refused, and every decision is audited.
func TestMCPLibraryOnRealSPIRE(t *testing.T) {
	s := newStack(t)
	const resource = "https://files.example.org/mcp"
	tk := newMCPTasks(s, "fs", []string{"fs:read", "fs:write"}, []string{"fs:read"})

	// The server process's own identity, so that it gets the bundles from
	// the Workload API like any workload.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		t.Fatal(err)
	}
	s.srv.CreateEntry(t, "spiffe://example.org/mcp/files", s.agent.NodeID.String(), "unix:path:"+self)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	jwtSource, err := workloadapi.NewJWTSource(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(s.agent.Addr())))
	cancel()
	if err != nil {
		t.Fatalf("JWT bundles from the Workload API: %v", err)
	}
	t.Cleanup(func() { jwtSource.Close() })

	set, diags := policies.Load(filepath.Join(repoRoot(t), "examples", "mcp", "filesystem"))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	auditPath := filepath.Join(s.dir, "mcp-audit.log")
	aw, err := audit.Open(auditPath, audit.Options{Durability: audit.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { aw.Close() })
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{JWTBundles: jwtSource, Audiences: []string{resource}}),
		Policy: set,
		Audit:  aw,
	}
	files := &memFiles{files: map[string]string{"/srv/shared/notes.md": "the notes"}}
	server := files.server()
	a, err := mcpauth.New(v, mcpauth.Options{Resource: resource, ScopesSupported: []string{"fs:read", "fs:write"}})
	if err != nil {
		t.Fatal(err)
	}
	a.Install(server)
	mux := http.NewServeMux()
	mux.Handle("/mcp", a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)))
	mux.Handle(a.MetadataPath(), a.MetadataHandler())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	url := "http://" + l.Addr().String() + "/mcp"

	plannerTok := s.jwtAs(tk.planner, resource)
	childTok := s.jwtAs(tk.child, resource)
	readTools := []string{"list_directory", "read_file"}
	allTools := []string{"create_directory", "list_directory", "read_file", "write_file"}

	t.Run("go-sdk client", func(t *testing.T) {
		connect := func(tok string) *mcp.ClientSession {
			t.Helper()
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
				&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearerTransport{tok}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			return cs
		}
		planner, child := connect(plannerTok), connect(childTok)
		if got := goToolNames(t, planner); !slices.Equal(got, allTools) {
			t.Errorf("planner's tools %q, want %q", got, allTools)
		}
		if got := goToolNames(t, child); !slices.Equal(got, readTools) {
			t.Errorf("delegated researcher's tools %q, want %q (fewer than its planner's)", got, readTools)
		}
		for who, cs := range map[string]*mcp.ClientSession{"planner": planner, "researcher": child} {
			res, err := goCall(cs, "read_file", map[string]any{"path": "/srv/shared/notes.md"})
			if err != nil || res.IsError || res.Content[0].(*mcp.TextContent).Text != "the notes" {
				t.Errorf("%s reads /srv/shared/notes.md: %+v, %v", who, res, err)
			}
		}
		if _, err := goCall(planner, "write_file", map[string]any{"path": "/srv/agents/" + tk.plannerTask + "/out.md", "content": "x"}); err != nil {
			t.Errorf("planner writes below its own directory: %v", err)
		}
		_, err := goCall(planner, "write_file", map[string]any{"path": "/etc/passwd", "content": "x"})
		wantMCPRefusal(t, err, "fs-write-outside-task (policy.hcl:")
		_, err = goCall(child, "write_file", map[string]any{"path": "/etc/passwd", "content": "x"})
		wantMCPRefusal(t, err, "fs-write-outside-task (policy.hcl:")
		// below its own directory more scopes would help: 403 insufficient_scope
		_, err = goCall(child, "write_file", map[string]any{"path": "/srv/agents/" + tk.childTk + "/out.md", "content": "x"})
		if err == nil || !strings.Contains(err.Error(), "Forbidden") && !strings.Contains(err.Error(), "403") {
			t.Errorf("researcher without fs:write writes: %v", err)
		}
	})

	t.Run("TypeScript client", func(t *testing.T) {
		js := npmtest.Require(t)
		run := func(tok string, args ...string) []tsLine {
			t.Helper()
			return runTSClient(t, js, url, tok, args...)
		}
		out := run(plannerTok, "list", "call", "read_file", `{"path":"/srv/shared/notes.md"}`,
			"call", "write_file", `{"path":"/etc/passwd","content":"x"}`)
		if got := out[1].Tools; !slices.Equal(sorted(got), allTools) {
			t.Errorf("planner's tools %q, want %q", got, allTools)
		}
		if !strings.Contains(string(out[2].Result), "the notes") {
			t.Errorf("planner reads: %s", out[2].Result)
		}
		if e := out[3].Error; e == nil || e.Code != mcpauth.CodeForbidden || !strings.Contains(e.Message, "fs-write-outside-task (policy.hcl:") {
			t.Errorf("planner writes /etc/passwd: %+v %s", e, out[3].Result)
		}
		out = run(childTok, "list", "call", "read_file", `{"path":"/srv/shared/notes.md"}`)
		if got := out[1].Tools; !slices.Equal(sorted(got), readTools) {
			t.Errorf("delegated researcher's tools %q, want %q", got, readTools)
		}
		if !strings.Contains(string(out[2].Result), "the notes") {
			t.Errorf("researcher reads: %s", out[2].Result)
		}
		// a token the planner got for another MCP server
		other := s.jwtAs(tk.planner, "https://db.example.org/mcp")
		out = run(other)
		if e := out[0].Error; e == nil || !strings.Contains(e.Message, "401") && !strings.Contains(e.Message, "wrong_audience") {
			t.Errorf("a bearer minted for another server connects: %+v", e)
		}
	})

	t.Run("kbagent -mcp as the task", func(t *testing.T) {
		// examples/kbagent fetches the task's JWT-SVID for the resource
		// from the Workload API itself.
		kbagent := buildCmd(t, "./examples/kbagent")
		run := func(task, tool, args string) string {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, err := s.run("run", "--task-file", task, "--manifest-dir", s.manifestDir, "--", kbagent,
					"-socket", s.agent.SocketPath, "-mcp", url, "-audience", resource, "-call", tool, "-args", args)
				if err == nil {
					return out
				}
				if time.Now().After(deadline) {
					t.Fatalf("kbagent -mcp as %s: %v", filepath.Base(task), err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		if out := run(tk.child, "read_file", `{"path":"/srv/shared/notes.md"}`); out != "tools: list_directory, read_file\nread_file: the notes\n" {
			t.Errorf("researcher: %q", out)
		}
		if out := run(tk.planner, "write_file", `{"path":"/etc/passwd","content":"x"}`); !strings.HasPrefix(out, "tools: create_directory, list_directory, read_file, write_file\nwrite_file: refused: -32031 ") ||
			!strings.Contains(out, "fs-write-outside-task (policy.hcl:") {
			t.Errorf("planner: %q", out)
		}
	})

	// Every decision is in the log, the refusals with the deciding rule.
	aw.Flush()
	var denied int
	for _, r := range auditRecords(t, auditPath) {
		if r.Action != nil && r.Action.Name == "write_file" && r.Decision == "deny" && r.Peer == tk.plannerID {
			if len(r.Rules) == 0 || !strings.HasPrefix(r.Rules[0], "fs-write-outside-task") {
				t.Errorf("denial recorded without the deciding rule: %+v", r)
			}
			denied++
		}
	}
	if denied == 0 {
		t.Error("the planner's refused write is not in the audit log")
	}
	for _, c := range files.calls {
		if strings.HasSuffix(c, "/etc/passwd") {
			t.Errorf("a refused call reached the server: %s", c)
		}
	}
}

func goToolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return sorted(names)
}

func goCall(cs *mcp.ClientSession, name string, args any) (*mcp.CallToolResult, error) {
	return cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
}

// wantMCPRefusal checks that err is an MCP error (a JSON-RPC error
// response, not a transport failure) of a policy denial naming rule.
func wantMCPRefusal(t *testing.T, err error, rule string) {
	t.Helper()
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpauth.CodeForbidden || !strings.Contains(je.Message, rule) {
		t.Errorf("want an MCP error %d naming %q, got %v", mcpauth.CodeForbidden, rule, err)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// tsLine is one JSON line of examples/mcp/client.
type tsLine struct {
	Op        string          `json:"op"`
	Tools     []string        `json:"tools"`
	Resources []string        `json:"resources"`
	Prompts   []string        `json:"prompts"`
	Templates []string        `json:"templates"`
	Ref       string          `json:"ref"`
	Tool      string          `json:"tool"`
	URI       string          `json:"uri"`
	Prompt    string          `json:"prompt"`
	Result    json.RawMessage `json:"result"`
	Error     *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// runTSClient runs the TypeScript client against url with token (none if
// empty) and returns its lines: the connect line, then one per command.
func runTSClient(t *testing.T, js *npmtest.Tools, url, token string, args ...string) []tsLine {
	t.Helper()
	argv := []string{js.Client, "--url", url}
	if token != "" {
		f := filepath.Join(t.TempDir(), "token")
		writeFile(t, f, token)
		argv = append(argv, "--token-file", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, js.Node, append(argv, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var lines []tsLine
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l tsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("client line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	connected := len(lines) > 0 && lines[0].Error == nil
	if len(lines) == 0 || connected && (err != nil || len(lines) != 1+countCommands(args)) {
		t.Fatalf("client %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	var shown []string
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if len(l) > 400 {
			l = l[:400] + "…"
		}
		shown = append(shown, l)
	}
	t.Logf("TypeScript client %s:\n%s", strings.Join(args, " "), strings.Join(shown, "\n"))
	return lines
}

func countCommands(args []string) int {
	n := 0
	for _, a := range args {
		switch a {
		case "list", "call", "resources", "read", "prompts", "prompt", "templates", "complete":
			n++
		}
	}
	return n
}

// auditRecords returns the decision records of the log at path.
func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	b := mustRead(t, path)
	var out []audit.Record
	lines := bytes.Split(b, []byte("\n"))
	for _, line := range lines[:len(lines)-1] { // the last is "" or a line being written
		if len(line) == 0 {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == audit.TypeDecision {
			out = append(out, r)
		}
	}
	return out
}
