package verifier_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"
)

// TestMCPPathAnyCase (R5): an upstream that routes case-insensitively
// (Express's default, ASP.NET Core, IIS) serves POST /MCP as its MCP
// endpoint; the proxy and ext_authz decide it, and /Mcp;x, /MCP/x, as MCP
// too (ASCII case-insensitively), never as a plain HTTP POST that a rule
// on paths would allow.
func TestMCPPathAnyCase(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, attackPolicy+`
rule "api" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["POST"]
      paths   = ["/M*", "/M*/**"]
    }
  }
}
`)
	var reached []string
	client, base, _ := proxyTo(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reached = append(reached, r.URL.Path+" "+string(b))
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	}))
	shell := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}`
	for _, p := range []string{"/MCP", "/Mcp", "/mCp", "/Mcp;x", "/MCP/x"} {
		if st, body := rawRequestCT(t, client, base, p, shell); st == 200 {
			t.Errorf("proxy POST %s tools/call shell: %d %q, decided as plain HTTP", p, st, body)
		}
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", p, nil, shell))
		if got := code.Code(resp.GetStatus().GetCode()); got == code.Code_OK {
			t.Errorf("ext_authz POST %s tools/call shell allowed, decided as plain HTTP", p)
		}
	}
	if len(reached) != 0 {
		t.Errorf("reached the upstream: %q", reached)
	}
	// The allowed call passes in any case, decided as MCP.
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}}`
	if st, body := rawRequestCT(t, client, base, "/MCP", call); st != 200 || !strings.Contains(reached[0], "search_docs") {
		t.Errorf("proxy POST /MCP search_docs: %d %q", st, body)
	}
	// A path that merely starts with the MCP path's letters is plain HTTP.
	if resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/MCPX", nil, "x")); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Errorf("ext_authz POST /MCPX (plain HTTP): %v", resp.GetStatus())
	}
}

// rawRequestCT POSTs a JSON body to target exactly as written.
func rawRequestCT(t *testing.T, client *http.Client, base, target, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/", strings.NewReader(body))
	req.URL.Opaque = target
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
