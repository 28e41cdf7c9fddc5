package mcpgw_test

// Bodies in another charset: the gateway decides the body's bytes as
// UTF-8 but forwarded the agent's Content-Type, charset and all, to an
// upstream that may decode them otherwise.

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unicode/utf16"

	"github.com/agentid/agentid/internal/npmtest"
	"github.com/agentid/agentid/verifier/mcpgw"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// tsServerJS: an MCP server as the TypeScript SDK's docs write one (the
// SDK's createMcpExpressApp(), i.e. express.json(), and a stateless
// Streamable HTTP transport handed req.body). Each tool appends its name
// to argv[4] when it runs.
const tsServerJS = `
const base = process.argv[2] + '/node_modules/@modelcontextprotocol/sdk/dist/cjs/server/';
const { McpServer } = require(base + 'mcp.js');
const { StreamableHTTPServerTransport } = require(base + 'streamableHttp.js');
const { createMcpExpressApp } = require(base + 'express.js');
const fs = require('fs');
const port = Number(process.argv[3]);
const ran = process.argv[4];
const tools = process.argv.slice(5);
const app = createMcpExpressApp({ allowedHosts: ['127.0.0.1', 'localhost', '127.0.0.1:' + port] });
app.post('/mcp', async (req, res) => {
  const server = new McpServer({ name: 'victim', version: '1' });
  for (const tool of tools) {
    server.registerTool(tool, { description: tool }, async () => {
      fs.appendFileSync(ran, tool + '\n');
      return { content: [{ type: 'text', text: 'ran ' + tool }] };
    });
  }
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on('close', () => { transport.close(); server.close(); });
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.listen(port, '127.0.0.1', () => console.log('LISTENING'));
`

func startTSServer(t *testing.T, tools ...string) (url string, ran func() []string) {
	t.Helper()
	js := npmtest.Require(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "server.cjs")
	ranFile := filepath.Join(dir, "ran")
	if err := os.WriteFile(script, []byte(tsServerJS), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(js.Node, append([]string{script, js.Dir, strconv.Itoa(port), ranFile}, tools...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.Contains(line, "LISTENING") {
		t.Fatalf("the TypeScript MCP server did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return "http://127.0.0.1:" + strconv.Itoa(port) + "/mcp", func() []string {
		b, _ := os.ReadFile(ranFile)
		return strings.Fields(string(b))
	}
}

// utf7 is s in UTF-7's base64 form, "+…-".
func utf7(s string) string {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return "+" + strings.TrimRight(base64.StdEncoding.EncodeToString(b), "=") + "-"
}

// TestAttackGatewayCharsetUTF7: a tools/call the gateway reads (as UTF-8) as the
// allowed echo, sent with "charset=utf-7", is run by a TypeScript SDK
// upstream (express.json() decodes UTF-7) as shell, which no rule allows:
// the "+…-" run in echo's argument is `"},"name":"shell","z":{"a":"`, and
// JSON.parse keeps the last "name".
func TestAttackGatewayCharsetUTF7(t *testing.T) {
	f := newFixture(t)
	up, ran := startTSServer(t, "echo", "shell")
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up)})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)

	// shell itself is refused
	if resp, body := post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}`); !strings.Contains(body, "forbidden") {
		t.Fatalf("shell: %d %s; want forbidden", resp.StatusCode, body)
	}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x` + utf7(`"},"name":"shell","z":{"a":"`) + `"}}}`
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
