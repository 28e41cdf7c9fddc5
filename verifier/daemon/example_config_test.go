package daemon_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier/daemon"
)

// TestExampleConfigParses keeps the documented example configuration
// (examples/verifier/verifier.hcl) loadable by the code and checks that
// each of its blocks lands where the docs say.
func TestExampleConfigParses(t *testing.T) {
	t.Setenv("FILES_MCP_TOKEN", "example-token") // the mcp block's upstream credential
	cfg, err := daemon.LoadConfig("../../examples/verifier/verifier.hcl")
	if err != nil {
		t.Fatalf("the example configuration does not load:\n%v", err)
	}
	if cfg.Audit == nil {
		t.Fatal("audit block not decoded")
	}
	if err := cfg.MCP.LoadSecrets(); err != nil {
		t.Fatal(err)
	}
	if cfg.Files != nil {
		t.Errorf("files = %+v, the example uses the Workload API", cfg.Files)
	}
	if cfg.AuthZEN == nil {
		t.Fatal("authzen block not decoded")
	}
	upstream := ""
	if cfg.ProxyUpstream != nil {
		upstream = cfg.ProxyUpstream.String()
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"trust_domain", cfg.TrustDomain.Name(), "example.org"},
		{"trust_domains", fmt.Sprint(cfg.TrustDomains), "[example.org]"},
		{"extension_oid (default)", cfg.ExtensionOID.String(), svid.DefaultOID.String()},
		{"policy_dir", cfg.PolicyDir, "/etc/agentid/policies"},
		{"jwt_audiences", slices.Equal(cfg.JWTAudiences, []string{"kb"}), true},
		{"workload_api.socket", cfg.WorkloadAPISocket, "/run/spire/agent/public/api.sock"},
		{"audit.path", cfg.Audit.Path, "/var/log/agentid/audit.log"},
		{"audit.durability", cfg.Audit.Options.Durability, audit.SyncBatch},
		{"audit.max_bytes", cfg.Audit.Options.MaxBytes, int64(64 << 20)},
		{"audit.checkpoint_every", cfg.Audit.Options.CheckpointEvery, 1000},
		{"audit.checkpoint_interval", cfg.Audit.Options.CheckpointInterval, time.Minute},
		{"ext_authz.listen", cfg.ExtAuthzListen, "127.0.0.1:9191"},
		{"ext_authz.mcp_paths", slices.Equal(cfg.ExtAuthzMCPPaths, []string{"/mcp"}), true},
		{"proxy.listen", cfg.ProxyListen, "0.0.0.0:8443"},
		{"proxy.upstream", upstream, "http://127.0.0.1:8080"},
		{"proxy.mcp_paths", slices.Equal(cfg.ProxyMCPPaths, []string{"/mcp"}), true},
		{"check_api.listen", cfg.CheckAPIListen, "127.0.0.1:9192"},
		{"check_api.allowed_callers", fmt.Sprint(cfg.CheckAPICallers), "[spiffe://example.org/kb]"},
		{"ext_authz.allowed_callers", fmt.Sprint(cfg.ExtAuthzCallers), "[spiffe://example.org/envoy]"},
		{"audit.on_failure", cfg.Audit.FailOpen, false},
		{"metrics.listen", cfg.MetricsListen, "127.0.0.1:9090"},
		{"authzen.subject_types", fmt.Sprint(cfg.AuthZEN.SubjectTypes), "[user]"},
		{"authzen.max_batch", cfg.AuthZEN.MaxBatch, 1000},
		{"authzen.policy_decision_point", cfg.AuthZEN.PDP, "https://pdp.example.org:9192"},
		{"mcp.listen", cfg.MCP.Listen, "0.0.0.0:8444"},
		{"mcp.resource", cfg.MCP.Gateway.Resource, "https://files.example.org/mcp"},
		{"mcp.upstream", cfg.MCP.Gateway.Upstream.String(), "http://127.0.0.1:3001/mcp"},
		{"mcp.upstream_header", cfg.MCP.Gateway.UpstreamHeader + ": " + cfg.MCP.Gateway.UpstreamValue, "Authorization: Bearer example-token"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
