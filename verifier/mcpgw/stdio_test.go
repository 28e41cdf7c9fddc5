package mcpgw_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/agentid/agentid/verifier/mcpauth"
	"github.com/agentid/agentid/verifier/mcpgw"
)

// buildStdioServer builds testdata/stdioserver, a go-sdk stdio MCP server
// whose crash tool exits while its call is in flight.
func buildStdioServer(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "ai")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "stdioserver")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/stdioserver").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer collects the gateway's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGatewayStdioChild: a stdio MCP server run by the gateway as a child,
// served over Streamable HTTP behind the same checks; it crashes on
// demand: the call in flight fails with a JSON-RPC error, the child is
// restarted (and initialized again), the next call works, and a new
// session too. Its stderr is logged; its environment is only Config.Env.
func TestGatewayStdioChild(t *testing.T) {
	bin := buildStdioServer(t)
	f := newFixture(t)
	var logs syncBuffer
	_, gw := f.gateway(t, mcpgw.Config{Command: []string{bin, "-tag", "child-1"}, Env: []string{"ONLY=this"},
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	tok := f.token(t, "T-41", []string{"fs:read", "fs:write"}, resource)
	cs := connect(t, gw.URL, tok, nil)

	if got, want := toolNames(t, cs), []string{"crash", "echo", "read_file", "write_file"}; !slices.Equal(got, want) {
		t.Fatalf("tools %q, want %q", got, want)
	}
	res, err := call(cs, "echo", map[string]any{"x": 1})
	if err != nil || len(res.Content) != 1 {
		t.Fatalf("echo: %+v %v", res, err)
	}
	_, err = call(cs, "write_file", map[string]any{"path": "/etc/passwd"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "fs-write-outside-task")
	_, err = call(cs, "rm_rf", map[string]any{})
	wantRefusal(t, err, jsonrpc.CodeInvalidParams, "bad_request", `"rm_rf" is not a tool of the upstream MCP server`)

	_, err = call(cs, "crash", map[string]any{})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpgw.CodeUpstream || !strings.Contains(je.Message, "the stdio MCP server exited") {
		t.Fatalf("call in flight when the child died: %v", err)
	}
	// the next call waits for the restarted child
	if _, err := call(cs, "read_file", map[string]any{"path": "/srv/shared/a"}); err != nil {
		t.Fatalf("the next call after the crash: %v", err)
	}
	// a client of an older protocol joins the child initialized by go-sdk
	// (2025-11-25) with the version it asked for
	resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"old","version":"1"}}}`)
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") == "" || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) || !strings.Contains(body, `"id":7`) {
		t.Fatalf("initialize at 2025-06-18: %d %s", resp.StatusCode, body)
	}
	cs2 := connect(t, gw.URL, f.token(t, "T-42", []string{"fs:read"}, resource), nil)
	if got, want := toolNames(t, cs2), []string{"crash", "echo", "read_file"}; !slices.Equal(got, want) {
		t.Fatalf("a new session after the restart: tools %q, want %q", got, want)
	}
	log := logs.String()
	if n := strings.Count(log, "started child-1"); n != 2 {
		t.Fatalf("the child started %d times, want 2; log:\n%s", n, log)
	}
	if !strings.Contains(log, "crashing on demand") || !strings.Contains(log, "exit status 3") {
		t.Fatalf("the child's stderr and exit are not in the log:\n%s", log)
	}
	if !strings.Contains(log, "env=ONLY=this\"") {
		t.Fatalf("the child's environment is not only Config.Env:\n%s", log)
	}
}

// TestGatewayStdioStderrBounded: a child that floods stderr gets
// StderrBytes logged, then one line saying the rest is not.
func TestGatewayStdioStderrBounded(t *testing.T) {
	bin := buildStdioServer(t)
	f := newFixture(t)
	var logs syncBuffer
	_, gw := f.gateway(t, mcpgw.Config{Command: []string{bin, "-noise", "100000"}, StderrBytes: 4096,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	cs := connect(t, gw.URL, f.token(t, "T-41", []string{"fs:read"}, resource), nil)
	toolNames(t, cs)
	log := logs.String()
	if !strings.Contains(log, "started") || !strings.Contains(log, "reached stderr_log_bytes") || strings.Contains(log, strings.Repeat("n", 5000)) || len(log) > 16<<10 {
		t.Fatalf("stderr log (%d bytes):\n%.2000s", len(log), log)
	}
}

// TestGatewayStdioChildThatNeverRuns: a program that is not there is a
// configuration error; one that exits at once fails the client's requests
// with an error naming the child, and never hangs them.
func TestGatewayStdioChildThatNeverRuns(t *testing.T) {
	f := newFixture(t)
	if _, err := mcpgw.New(f.v, mcpgw.Config{Resource: resource, Command: []string{"/nonexistent/mcp-server"}}); err == nil || !strings.Contains(err.Error(), "mcpgw: Command: ") {
		t.Fatalf("missing program: %v", err)
	}
	// this test binary, running no test: it exits at once
	_, gw := f.gateway(t, mcpgw.Config{Command: []string{os.Args[0], "-test.run=^$"}})
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	for range 3 {
		_, err := tryConnect(gw.URL, tok, nil)
		if err == nil || !strings.Contains(err.Error(), "stdio MCP server") {
			t.Fatalf("connect to a child that exits at once: %v", err)
		}
	}
}
