package devstack

import (
	"net/url"
	"slices"
	"testing"

	"github.com/agentid/agentid/verifier/daemon"
)

// The mcp block devstack writes for VerifierOptions.MCP is one that
// agentid-verifier reads: a stdio child and a Streamable HTTP upstream.
func TestVerifierConfigMCP(t *testing.T) {
	s := &Stack{TrustDomain: "example.org", AgentSocket: "/tmp/a.sock", RegistrarAddr: "127.0.0.1:1",
		RegistrarID: "spiffe://example.org/agentid/registrar", VerifierID: "spiffe://example.org/agentid/verifier"}
	v := &Verifier{Name: "mcp", PolicyDir: "/tmp/policies", AuditPath: "/tmp/audit.log"}
	for _, m := range []*MCPGateway{
		{Resource: "https://kb.example.org/mcp", Command: []string{"/bin/kbservice", "-mcp"}},
		{Resource: "https://everything.example.org/mcp", Upstream: "http://127.0.0.1:3001/mcp"},
	} {
		src := s.verifierConfig(v, VerifierOptions{MCP: m, JWTAudiences: []string{"dev"}}, 1, 2, 3, 4)
		cfg, err := daemon.ParseConfig([]byte(src), "mcp.hcl")
		if err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
		got := cfg.MCP
		if got == nil || got.Listen != "127.0.0.1:4" || !got.Plaintext || got.Gateway.Resource != m.Resource ||
			!slices.Equal(got.Gateway.Command, m.Command) || (m.Upstream != "") != (got.Gateway.Upstream != nil) {
			t.Fatalf("mcp block read as %+v\n%s", got, src)
		}
		if m.Upstream != "" && got.Gateway.Upstream.String() != (&url.URL{Scheme: "http", Host: "127.0.0.1:3001", Path: "/mcp"}).String() {
			t.Fatalf("upstream %v", got.Gateway.Upstream)
		}
	}
}
