package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier/daemon"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestAttackMCPAudienceElsewhere (review 11 F3): configuring an MCP gateway adds its resource to the audiences
// every other front-end accepts. A JWT-SVID minted for the MCP server (and
// shown to the gateway, possibly in plaintext) is accepted by the check API
// (and ext_authz, the proxy, AuthZEN) of the daemon: anyone who saw a
// gateway-bound token (a load balancer, header logs) could replay it at
// services meant for other audiences. The resource is now accepted only by
// queries naming it (the gateway's), jwt_audiences everywhere.
func TestAttackMCPAudienceElsewhere(t *testing.T) {
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	dir := t.TempDir()
	policyDir := filepath.Join(dir, "policies")
	os.Mkdir(policyDir, 0o755)
	write(t, filepath.Join(policyDir, "kb.hcl"), kbPolicy)
	write(t, filepath.Join(dir, "bundle.pem"), string(ca.BundlePEM()))
	jb, _ := ca.JWTBundle().Marshal()
	write(t, filepath.Join(dir, "jwt.json"), string(jb))
	certs, key := testca.SVIDPEM(t, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier")))
	write(t, filepath.Join(dir, "svid.pem"), string(certs))
	write(t, filepath.Join(dir, "key.pem"), string(key))
	t.Setenv("AGENTID_TEST_MCP_TOKEN", "upstream-token")
	src := `
trust_domain  = "example.org"
jwt_audiences = ["kb"]
policy_dir   = "` + policyDir + `"
files {
  x509_bundle = "` + filepath.Join(dir, "bundle.pem") + `"
  jwt_bundle  = "` + filepath.Join(dir, "jwt.json") + `"
  svid_cert   = "` + filepath.Join(dir, "svid.pem") + `"
  svid_key    = "` + filepath.Join(dir, "key.pem") + `"
}
check_api {
  listen = "127.0.0.1:0"
}
mcp {
  listen   = "127.0.0.1:0"
  resource = "https://files.example.org/mcp"
  upstream = "http://127.0.0.1:1/mcp"
}
`
	cfg, err := daemon.ParseConfig([]byte(src), "v.hcl")
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o", Prompt: svid.PromptDigest(nil),
		Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice",
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	check := func(aud string) map[string]any {
		t.Helper()
		tok := ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"), []string{aud}, c.JWTClaims())
		body, _ := json.Marshal(map[string]any{"jwt": tok, "action": map[string]string{"kind": "http", "method": "GET", "path": "/kb/doc"}})
		resp, err := http.Post("http://"+d.Addr("check_api").String()+"/v1/check", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	if out := check("https://files.example.org/mcp"); out["allow"] == true || !strings.Contains(fmt.Sprint(out["reason"]), "wrong_audience") {
		t.Errorf("a JWT-SVID minted for the MCP gateway's resource, at the check API: %v", out)
	}
	if out := check("kb"); out["allow"] != true {
		t.Errorf("a JWT-SVID for jwt_audiences: %v", out)
	}
}
