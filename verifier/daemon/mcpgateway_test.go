package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier/daemon"
)

type bearerRT struct {
	tok  string
	base http.RoundTripper
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

// TestDaemonMCPGatewayOnly: agentid-verifier with only an mcp block
// (besides trust, policy and audit) serves the gateway over TLS with its
// SVID; a go-sdk client reaches a go-sdk server through it with a
// JWT-SVID bearer and with its X.509-SVID (SPIFFE mTLS); the upstream
// gets the configured credential.
func TestDaemonMCPGatewayOnly(t *testing.T) {
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	dir := t.TempDir()
	policyDir := writeMCPFiles(t, ca, dir)
	verifierID := spiffeid.RequireFromString("spiffe://example.org/verifier")
	certs, key := testca.SVIDPEM(t, ca.CreateX509SVID(verifierID))
	write(t, filepath.Join(dir, "svid.pem"), string(certs))
	write(t, filepath.Join(dir, "key.pem"), string(key))

	var mu sync.Mutex
	var upstreamAuth []string
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	for _, name := range []string{"read_file", "write_file", "admin_reset"} {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
			})
	}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamAuth = append(upstreamAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer up.Close()
	t.Setenv("AGENTID_TEST_MCP_TOKEN", "upstream-token")

	cfg, err := daemon.ParseConfig([]byte(`
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
files {
  x509_bundle = "`+filepath.Join(dir, "bundle.pem")+`"
  jwt_bundle  = "`+filepath.Join(dir, "jwt.json")+`"
  svid_cert   = "`+filepath.Join(dir, "svid.pem")+`"
  svid_key    = "`+filepath.Join(dir, "key.pem")+`"
}
audit {
  path = "`+filepath.Join(dir, "audit.log")+`"
}
mcp {
  listen   = "127.0.0.1:0"
  resource = "https://files.example.org/mcp"
  upstream = "`+up.URL+`/mcp"
  upstream_header {
    name      = "Authorization"
    value_env = "AGENTID_TEST_MCP_TOKEN"
    prefix    = "Bearer "
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
	url := "https://" + d.Addr("mcp").String() + "/mcp"

	// JWT-SVID bearer over TLS (the client checks the verifier's SPIFFE ID)
	c := svid.Claims{V: 1, Agent: "researcher", Task: "T-41", Model: "openai/gpt-4o", Prompt: svid.PromptDigest(nil),
		Scope: []string{"fs:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{},
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	tok := ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-41"), []string{"https://files.example.org/mcp"}, c.JWTClaims())
	tlsOnly := &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(ca.X509Bundle(), tlsconfig.AuthorizeID(verifierID))}
	f := &fixture{ca: ca}
	taskSVID := f.taskSVID(t, ca, "fs:read", "fs:write")
	mtls := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(x509svid.Source(taskSVID), ca.X509Bundle(), tlsconfig.AuthorizeID(verifierID))}
	defer tlsOnly.CloseIdleConnections() // before d.Close: it waits 5 s for connections that never sent a request
	defer mtls.CloseIdleConnections()
	for _, tc := range []struct {
		name  string
		rt    http.RoundTripper
		tools []string
	}{
		{"bearer", bearerRT{tok, tlsOnly}, []string{"read_file"}},
		{"mtls", mtls, []string{"read_file", "write_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
				&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: tc.rt}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range res.Tools {
				names = append(names, tl.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.tools) {
				t.Fatalf("tools %q, want %q", names, tc.tools)
			}
			if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "/srv/a"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "admin_reset", Arguments: map[string]any{}}); err == nil {
				t.Fatal("admin_reset allowed")
			}
		})
	}
	// without a credential: 401 with the resource metadata
	resp, err := (&http.Client{Transport: tlsOnly}).Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no credential: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(upstreamAuth) == 0 {
		t.Fatal("the upstream got nothing")
	}
	for _, a := range upstreamAuth {
		if a != "Bearer upstream-token" {
			t.Fatalf("the upstream got Authorization %q", a)
		}
	}
}

// TestDaemonMCPGatewayStdioPlaintext: the gateway of agentid-verifier in
// front of a stdio MCP server it runs (the mcpgw tests' server, built
// here), served as plain HTTP (plaintext = true) to a bearer client; the
// child stops with the daemon.
func TestDaemonMCPGatewayStdioPlaintext(t *testing.T) {
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	dir, err := os.MkdirTemp("/tmp", "ai")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "stdioserver")
	if out, err := exec.Command("go", "build", "-o", bin, "../mcpgw/testdata/stdioserver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	policyDir := writeMCPFiles(t, ca, dir)
	write(t, filepath.Join(policyDir, "crash.hcl"), "rule \"crash\" {\n  effect = \"allow\"\n  action {\n    mcp { tools = [\"crash\"] }\n  }\n}\n")
	cfg, err := daemon.ParseConfig([]byte(`
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
files {
  x509_bundle = "`+filepath.Join(dir, "bundle.pem")+`"
  jwt_bundle  = "`+filepath.Join(dir, "jwt.json")+`"
}
metrics {
  listen = "127.0.0.1:0"
}
mcp {
  listen           = "127.0.0.1:0"
  plaintext        = true
  resource         = "https://files.example.org/mcp"
  upstream_command = ["`+bin+`", "-tag", "`+filepath.Base(dir)+`"]
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
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil || len(res.Tools) != 2 || res.Tools[0].Name != "crash" || res.Tools[1].Name != "read_file" {
		t.Fatalf("tools %+v %v", res, err)
	}
	// the child crashes, is restarted, and counted; ready again once it runs
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "crash", Arguments: map[string]any{}}); err == nil {
		t.Fatal("the crash call succeeded")
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "/srv/a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": "/srv/agents/T-41/a"}}); err == nil {
		t.Fatal("write without fs:write allowed")
	}
	if n := processesWith(t, filepath.Base(dir)); n != 1 {
		t.Fatalf("%d child processes running, want 1", n)
	}
	ops := "http://" + d.Addr("metrics").String()
	body := get(t, ops+"/metrics")
	for _, m := range []string{"agentid_mcp_child_starts_total 2", "agentid_mcp_dropped_responses_total 0",
		"agentid_mcp_suppressed_notifications_total 0", "agentid_mcp_forgotten_sessions_deleted_total 0"} {
		if !strings.Contains(body, m) {
			t.Fatalf("metrics without %q:\n%s", m, body)
		}
	}
	if body := get(t, ops+"/readyz"); !strings.HasPrefix(body, "ready") {
		t.Fatalf("readyz: %s", body)
	}
	cs.Close()
	d.Close()
	if n := processesWith(t, filepath.Base(dir)); n != 0 {
		t.Fatalf("%d child processes left after the daemon closed", n)
	}
}

// processesWith counts the processes whose command line holds tag.
func processesWith(t *testing.T, tag string) int {
	t.Helper()
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range cmdlines {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), "stdioserver\x00-tag\x00"+tag) {
			n++
		}
	}
	return n
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// writeMCPFiles writes the gateway tests' files under dir: the filesystem
// example policy in dir/policies (returned) and ca's bundles, bundle.pem
// and jwt.json.
func writeMCPFiles(t *testing.T, ca *testca.CA, dir string) string {
	t.Helper()
	policyDir := filepath.Join(dir, "policies")
	os.Mkdir(policyDir, 0o755)
	src, err := os.ReadFile("../../examples/mcp/filesystem/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(policyDir, "fs.hcl"), string(src))
	write(t, filepath.Join(dir, "bundle.pem"), string(ca.BundlePEM()))
	jb, _ := ca.JWTBundle().Marshal()
	write(t, filepath.Join(dir, "jwt.json"), string(jb))
	return policyDir
}

// connectResearcher connects a go-sdk client to d's plaintext gateway as
// task T-41 (fs:read) with a JWT-SVID bearer for the gateway's resource.
// Close the session before d: d.Close waits for its open streams.
func connectResearcher(t *testing.T, ca *testca.CA, d *daemon.Daemon) *mcp.ClientSession {
	t.Helper()
	c := svid.Claims{V: 1, Agent: "researcher", Task: "T-41", Model: "openai/gpt-4o", Prompt: svid.PromptDigest(nil),
		Scope: []string{"fs:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{},
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	tok := ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-41"), []string{"https://files.example.org/mcp"}, c.JWTClaims())
	rt := &http.Transport{}
	t.Cleanup(rt.CloseIdleConnections)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: "http://" + d.Addr("mcp").String() + "/mcp", HTTPClient: &http.Client{Transport: bearerRT{tok, rt}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
