package npmtest

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
)

// tsMCPServerJS is an MCP server written as the TypeScript SDK's docs
// write one: the SDK's own createMcpExpressApp() (express.json() as body
// parser) and a stateless Streamable HTTP transport handed req.body. Each
// tool appends its name to the file argv[4] when it runs.
const tsMCPServerJS = `
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

// StartTSMCPServer runs tsMCPServerJS with the given tools; ran returns
// the tools that ran so far.
func StartTSMCPServer(t testing.TB, tools ...string) (url string, ran func() []string) {
	t.Helper()
	js := Require(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "server.cjs")
	ranFile := filepath.Join(dir, "ran")
	if err := os.WriteFile(script, []byte(tsMCPServerJS), 0o600); err != nil {
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

// UTF7 is s in UTF-7's base64 form, "+…-": what a server decoding a body
// as UTF-7 (express.json() honours "charset=utf-7") reads as s, where a
// UTF-8 reader sees letters.
func UTF7(s string) string {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	return "+" + strings.TrimRight(base64.StdEncoding.EncodeToString(b), "=") + "-"
}
