package mcpgw_test

// Bodies in another charset: the gateway decides the body's bytes as
// UTF-8 but forwarded the agent's Content-Type, charset and all, to an
// upstream that may decode them otherwise.

import (
	"strings"
	"testing"

	"github.com/agentid/agentid/internal/npmtest"
	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestAttackGatewayCharsetUTF7: a tools/call the gateway reads (as UTF-8) as the
// allowed echo, sent with "charset=utf-7", is run by a TypeScript SDK
// upstream (express.json() decodes UTF-7) as shell, which no rule allows:
// the "+…-" run in echo's argument is `"},"name":"shell","z":{"a":"`, and
// JSON.parse keeps the last "name".
func TestAttackGatewayCharsetUTF7(t *testing.T) {
	f := newFixture(t)
	up, ran := npmtest.StartTSMCPServer(t, "echo", "shell")
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up)})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)

	// shell itself is refused
	if resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}`); !strings.Contains(body, "forbidden") {
		t.Fatalf("shell: %d %s; want forbidden", resp.StatusCode, body)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x` + npmtest.UTF7(`"},"name":"shell","z":{"a":"`) + `"}}}`
	resp, got := post(t, gw.URL, tok, body, "Content-Type", "application/json; charset=utf-7")
	if r := ran(); len(r) > 0 {
		t.Fatalf("the gateway answered %d %s and the upstream ran %q: the policy does not allow shell", resp.StatusCode, got, r)
	}
}

// TestGatewaySendsItsOwnContentType: the upstream gets the gateway's
// "application/json", not the agent's Content-Type: the bytes it decided
// are UTF-8 JSON whatever parameters the agent added.
func TestGatewaySendsItsOwnContentType(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}, 0)
	gw := f.httpGateway(t, up)
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	for _, ct := range []string{"application/json; charset=UTF-8", `application/json;charset="utf-8"`} {
		resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/agents/T-41/a"}}}`, "Content-Type", ct)
		if resp.StatusCode != 200 {
			t.Fatalf("Content-Type %q: %d %s", ct, resp.StatusCode, body)
		}
	}
	hs := up.seenHeaders()
	if len(hs) == 0 {
		t.Fatal("nothing reached the upstream")
	}
	for _, h := range hs {
		if got := h.Values("Content-Type"); len(got) != 1 || got[0] != "application/json" {
			t.Fatalf("the upstream got Content-Type %q, want the gateway's application/json", got)
		}
	}
}
