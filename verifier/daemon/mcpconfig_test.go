package daemon_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier/daemon"
)

// mcpBlock is a verifier configuration with only an mcp block (line 6 on)
// besides the trust source: the gateway on its own.
func mcpBlock(body string) string {
	return "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\nmcp {\n listen = \"127.0.0.1:0\"\n" + body + "\n}\n"
}

func TestMCPConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "token")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	t.Setenv("AGENTID_TEST_UPSTREAM_TOKEN", "from-env")
	t.Setenv("PATH", "/usr/bin:/bin")

	cfg, err := daemon.ParseConfig([]byte(mcpBlock(` resource = "https://files.example.org/mcp"
 upstream = "http://127.0.0.1:3001/mcp"
 scopes_supported = ["fs:read"]
 upstream_header {
  name       = "authorization"
  value_file = "`+secret+`"
  prefix     = "Bearer "
 }`)), "v.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.MCP.LoadSecrets(); err != nil {
		t.Fatal(err)
	}
	g := cfg.MCP.Gateway
	if cfg.MCP.Listen != "127.0.0.1:0" || g.Resource != "https://files.example.org/mcp" || g.Upstream.String() != "http://127.0.0.1:3001/mcp" ||
		g.UpstreamHeader != "Authorization" || g.UpstreamValue != "Bearer s3cret" || !slices.Equal(g.ScopesSupported, []string{"fs:read"}) {
		t.Fatalf("mcp config %+v", cfg.MCP)
	}

	if g.MaxSessionsPerTask != 0 {
		t.Fatalf("MaxSessionsPerTask %d without max_sessions_per_task, want 0 (mcpgw's default)", g.MaxSessionsPerTask)
	}
	cfg, err = daemon.ParseConfig([]byte(mcpBlock(` resource = "https://files.example.org/mcp"
 upstream = "http://127.0.0.1:3001/mcp"
 max_sessions_per_task = 16`)), "v.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := daemon.ParseConfig([]byte(mcpBlock(` resource = "https://files.example.org/mcp"
 upstream = "http://127.0.0.1:3001/mcp"
 session_idle_timeout = "30m"`)), "v.hcl"); err != nil || c2.MCP.Gateway.SessionIdleTimeout != 30*time.Minute {
		t.Fatalf("session_idle_timeout: %v", err)
	}
	if err != nil || cfg.MCP.Gateway.MaxSessionsPerTask != 16 || cfg.MCP.Gateway.SessionIdleTimeout != 0 {
		t.Fatalf("max_sessions_per_task: %+v %v", cfg, err)
	}

	cfg, err = daemon.ParseConfig([]byte(mcpBlock(` resource = "https://files.example.org/mcp"
 plaintext = true
 upstream_command = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/srv"]
 upstream_env = { NODE_ENV = "production", A = "1" }
 upstream_dir = "/srv"`)), "v.hcl")
	if err != nil {
		t.Fatal(err)
	}
	g = cfg.MCP.Gateway
	if !cfg.MCP.Plaintext || len(g.Command) != 4 || g.Dir != "/srv" || g.Upstream != nil {
		t.Fatalf("mcp config %+v", cfg.MCP)
	}
	if want := []string{"PATH=/usr/bin:/bin", "HOME=" + os.Getenv("HOME"), "A=1", "NODE_ENV=production"}; !slices.Equal(g.Env, want) {
		t.Fatalf("child env %q, want %q (nothing else of the verifier's)", g.Env, want)
	}

	cfg, err = daemon.ParseConfig([]byte(mcpBlock(` resource = "https://files.example.org/mcp"
 upstream = "https://mcp.example.net/mcp"
 upstream_header {
  name      = "X-Api-Key"
  value_env = "AGENTID_TEST_UPSTREAM_TOKEN"
 }`)), "v.hcl")
	if err == nil {
		err = cfg.MCP.LoadSecrets()
	}
	if err != nil || cfg.MCP.Gateway.UpstreamValue != "from-env" || cfg.MCP.Gateway.UpstreamHeader != "X-Api-Key" {
		t.Fatalf("value_env: %+v %v", cfg.MCP, err)
	}
}

func TestMCPConfigErrors(t *testing.T) {
	res := " resource = \"https://files.example.org/mcp\"\n"
	tests := []struct{ name, src, want string }{
		{"bad resource", mcpBlock(" resource = \"files\"\n upstream = \"http://u/mcp\""), `v.hcl:8:13: mcp.resource "files": want an absolute URI`},
		{"resource with fragment", mcpBlock(" resource = \"https://f/mcp#x\"\n upstream = \"http://u/mcp\""), `v.hcl:8:13: mcp.resource`},
		{"no upstream", mcpBlock(res), "v.hcl: mcp: upstream (a Streamable HTTP MCP server's URL) or upstream_command (a stdio MCP server) is required"},
		{"both upstreams", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_command = [\"srv\"]"), "v.hcl:10:21: mcp: give either upstream"},
		{"bad upstream", mcpBlock(res + " upstream = \"u:3001\""), `v.hcl:9:13: mcp.upstream "u:3001": want the http(s) URL`},
		{"bad path", mcpBlock(res + " upstream = \"http://u/mcp\"\n path = \"mcp\""), `v.hcl:10:9: mcp.path "mcp"`},
		{"empty program", mcpBlock(res + " upstream_command = [\"\"]"), `v.hcl:9:21: mcp.upstream_command: the program name is empty`},
		{"env without command", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_env = { A = \"1\" }"), `v.hcl:10:17: mcp: upstream_env and upstream_dir are for upstream_command`},
		{"negative stderr", mcpBlock(res + " upstream_command = [\"srv\"]\n stderr_log_bytes = -1"), `v.hcl:10:21: mcp.stderr_log_bytes -1`},
		{"missing secret file", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_header {\n  name = \"Authorization\"\n  value_file = \"/nonexistent/token\"\n }"), `v.hcl:12:16: mcp.upstream_header.value_file: open /nonexistent/token`},
		{"unset env", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_header {\n  name = \"Authorization\"\n  value_env = \"AGENTID_TEST_UNSET_VARIABLE\"\n }"), `v.hcl:12:15: mcp.upstream_header.value_env: AGENTID_TEST_UNSET_VARIABLE is not set`},
		{"file and env", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_header {\n  name = \"Authorization\"\n  value_env = \"A\"\n  value_file = \"f\"\n }"), `mcp.upstream_header: give one of value_file and value_env`},
		{"bad header name", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_header {\n  name = \"Authorization:\"\n  value_env = \"PATH\"\n }"), `mcp.upstream_header.name "Authorization:"`},
		{"header for stdio", mcpBlock(res + " upstream_command = [\"srv\"]\n upstream_header {\n  name = \"Authorization\"\n  value_env = \"PATH\"\n }"), `upstream_header is for an upstream URL`},
		{"zero sessions per task", mcpBlock(res + " upstream = \"http://u/mcp\"\n max_sessions_per_task = 0"), `v.hcl:10:26: mcp.max_sessions_per_task 0: want 1 to 65536`},
		{"too many sessions per task", mcpBlock(res + " upstream = \"http://u/mcp\"\n max_sessions_per_task = 100000"), `v.hcl:10:26: mcp.max_sessions_per_task 100000: want 1 to 65536`},
		{"sessions per task not a number", mcpBlock(res + " upstream = \"http://u/mcp\"\n max_sessions_per_task = \"many\""), `v.hcl:10:27: Unsuitable value type; Unsuitable value: a number is required`},
		{"bad idle timeout", mcpBlock(res + " upstream = \"http://u/mcp\"\n session_idle_timeout = \"soon\""), `v.hcl:10:25: mcp.session_idle_timeout "soon": want a positive duration`},
		{"negative idle timeout", mcpBlock(res + " upstream = \"http://u/mcp\"\n session_idle_timeout = \"-1m\""), `v.hcl:10:25: mcp.session_idle_timeout "-1m"`},
		{"unknown key", mcpBlock(res + " upstream = \"http://u/mcp\"\n upstream_dri = \"/srv\""), `v.hcl:10:2: Unsupported argument; An argument named "upstream_dri" is not expected here. Did you mean "upstream_dir"?`},
		{"TLS without SVID", "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nfiles {\n x509_bundle = \"b\"\n}\nmcp {\n listen = \":0\"\n" + res + " upstream = \"http://u/mcp\"\n}\n", `v.hcl:7:11: mcp serves TLS with the verifier's own SVID`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := daemon.ParseConfig([]byte(tc.src), "v.hcl")
			if err == nil && cfg.MCP != nil {
				err = cfg.MCP.LoadSecrets() // what the daemon does when it starts
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
