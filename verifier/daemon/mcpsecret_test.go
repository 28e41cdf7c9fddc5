package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier/daemon"
)

// TestDaemonMCPUpstreamCredentialRotation: upstream_header's value_file
// is read again when the file changes — replaced by a rename (how secret
// stores write), rewritten in place, swapped by a symbolic link
// (Kubernetes' ..data) — without restarting the verifier; a file that is
// removed, empty or holds a control character keeps the last good value.
func TestDaemonMCPUpstreamCredentialRotation(t *testing.T) {
	defer daemon.SetSecretCheckEvery(0)() // look at the file on every request
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	dir := t.TempDir()
	policyDir := writeMCPFiles(t, ca, dir)

	// the secret as Kubernetes mounts it: token -> ..data/token, ..data -> v1
	secrets := filepath.Join(dir, "secrets")
	for _, v := range []string{"v1", "v2"} {
		os.MkdirAll(filepath.Join(secrets, v), 0o755)
	}
	write(t, filepath.Join(secrets, "v1", "token"), "k1\n")
	if err := os.Symlink("v1", filepath.Join(secrets, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/token", filepath.Join(secrets, "token")); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []string
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "read_file", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer up.Close()

	cfg, err := daemon.ParseConfig([]byte(`
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
files {
  x509_bundle = "`+filepath.Join(dir, "bundle.pem")+`"
  jwt_bundle  = "`+filepath.Join(dir, "jwt.json")+`"
}
mcp {
  listen    = "127.0.0.1:0"
  plaintext = true
  resource  = "https://files.example.org/mcp"
  upstream  = "`+up.URL+`/mcp"
  upstream_header {
    name       = "Authorization"
    value_file = "`+filepath.Join(secrets, "token")+`"
    prefix     = "Bearer "
  }
}
`), "gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cs := connectResearcher(t, ca, d)
	defer cs.Close()

	// callSees calls a tool and returns the credential the upstream got
	callSees := func(step string) string {
		t.Helper()
		mu.Lock()
		got = got[:0]
		mu.Unlock()
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "/srv/a"}}); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			t.Fatalf("%s: nothing reached the upstream", step)
		}
		for _, a := range got[1:] {
			if a != got[0] {
				t.Fatalf("%s: the upstream got %q", step, got)
			}
		}
		return got[0]
	}
	replace := func(path, content string) { // write aside, rename over
		t.Helper()
		tmp := path + ".tmp"
		write(t, tmp, content)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	token := filepath.Join(secrets, "v1", "token")
	steps := []struct {
		name   string
		rotate func()
		want   string
	}{
		{"at start", func() {}, "Bearer k1"},
		{"replaced by rename", func() { replace(token, "k2\n") }, "Bearer k2"},
		{"rewritten in place", func() { write(t, token, "k3-longer\n") }, "Bearer k3-longer"},
		{"emptied: the last good value stays", func() { replace(token, "") }, "Bearer k3-longer"},
		{"a control character: the last good value stays", func() { replace(token, "k\x01x\n") }, "Bearer k3-longer"},
		{"removed: the last good value stays", func() { os.Remove(token) }, "Bearer k3-longer"},
		{"back", func() { replace(token, "k4\n") }, "Bearer k4"},
		{"..data swapped to another directory", func() {
			write(t, filepath.Join(secrets, "v2", "token"), "k5\n")
			os.Symlink("v2", filepath.Join(secrets, "..data_tmp"))
			if err := os.Rename(filepath.Join(secrets, "..data_tmp"), filepath.Join(secrets, "..data")); err != nil {
				t.Fatal(err)
			}
		}, "Bearer k5"},
	}
	for _, st := range steps {
		st.rotate()
		if a := callSees(st.name); a != st.want {
			t.Fatalf("%s: the upstream got %q, want %q", st.name, a, st.want)
		}
	}
}
