package verifier_test

// Bodies in another charset: requests whose bytes the verifier decided
// as one message (UTF-8) while a real server, honouring the Content-Type's
// charset, read another.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"unicode/utf16"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/npmtest"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// utf7Smuggle is a tools/call that the verifier (UTF-8) reads as
// search_docs with a harmless argument, and that a server decoding the
// body as UTF-7 (express.json() honours "charset=utf-7") reads as
// {"name":"search_docs","arguments":{"q":"x"},"name":"shell",…}: the
// "+…-" run in the argument is UTF-7 for `"},"name":"shell","z":{"a":"`,
// and JSON.parse keeps the last "name".
func utf7Smuggle() string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"q":"x` + npmtest.UTF7(`"},"name":"shell","z":{"a":"`) + `"}}}`
}

// TestAttackMCPCharsetUTF7Proxy: through the proxy, a tools/call sent as
// "Content-Type: application/json; charset=utf-7" is decided as the
// allowed search_docs; the TypeScript SDK server behind it runs shell,
// which the policy denies.
func TestAttackMCPCharsetUTF7Proxy(t *testing.T) {
	e := newAttackEnv(t)
	up, ran := npmtest.StartTSMCPServer(t, "search_docs", "shell")
	dial := proxyFor(t, e, strings.TrimSuffix(up, "/mcp"))
	body := utf7Smuggle()
	conn := dial()
	resp, got := exchangeRaw(t, conn, bufio.NewReader(conn), "POST /mcp HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/json; charset=utf-7\r\nAccept: application/json, text/event-stream\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if r := ran(); len(r) > 0 {
		t.Fatalf("the proxy answered %d %q and the MCP server ran %q: the policy allows search_docs only and denies shell", resp.StatusCode, got, r)
	}
	if resp.StatusCode < 400 {
		t.Fatalf("the proxy answered %d %q; want a refusal of a charset other than UTF-8", resp.StatusCode, got)
	}
}

// TestAttackMCPCharsetUTF7ExtAuthz: the same message through ext_authz is
// allowed; Envoy then forwards the request as it came (headers and body),
// which is what the test sends the TypeScript SDK server.
func TestAttackMCPCharsetUTF7ExtAuthz(t *testing.T) {
	e := newAttackEnv(t)
	up, ran := npmtest.StartTSMCPServer(t, "search_docs", "shell")
	body := utf7Smuggle()
	ct := "application/json; charset=utf-7"
	resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", map[string]string{"content-type": ct, "accept": "application/json, text/event-stream"}, body))
	if got := code.Code(resp.GetStatus().GetCode()); got != code.Code_OK {
		return // refused: nothing reaches the upstream
	}
	// allowed: Envoy forwards the request unchanged
	req, _ := http.NewRequest("POST", up, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/json, text/event-stream")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r.Body)
	r.Body.Close()
	t.Fatalf("ext_authz allowed it (decided as search_docs) and the upstream answered %d %s, having run %q: the policy denies shell",
		r.StatusCode, out, ran())
}

// expressOverrideJS is an Express 5 app that honours a "_method" field of
// a JSON body, as the method-override package's documented custom getter
// does (app.use(express.json()); app.use(methodOverride(req =>
// req.body._method))): inlined, since the package is not installed. It
// answers "ran <method>".
const expressOverrideJS = `
const express = require(process.argv[2] + '/node_modules/express');
const port = Number(process.argv[3]);
const app = express();
app.use(express.json());
app.use((req, res, next) => {
  if (req.body && typeof req.body === 'object' && '_method' in req.body) {
    const m = String(req.body._method).toUpperCase();
    delete req.body._method;
    if (['DELETE', 'PUT', 'PATCH'].includes(m)) req.method = m;
  }
  next();
});
app.all('/kb/{*rest}', (req, res) => res.send('ran ' + req.method));
app.listen(port, '127.0.0.1', () => console.log('LISTENING'));
`

// startExpressOverride runs expressOverrideJS and returns its URL.
func startExpressOverride(t *testing.T) string {
	t.Helper()
	js := npmtest.Require(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "app.cjs")
	if err := os.WriteFile(script, []byte(expressOverrideJS), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(js.Node, script, js.Dir, strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.Contains(line, "LISTENING") {
		t.Fatalf("express did not start: %q %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

// postVia sends one POST to /kb/docs/1 through the proxy, with the
// header lines given ("Name: value\r\n" each).
func postVia(t *testing.T, dial func() *tls.Conn, headerLines, body string) (int, string) {
	t.Helper()
	conn := dial()
	resp, got := exchangeRaw(t, conn, bufio.NewReader(conn), "POST /kb/docs/1 HTTP/1.1\r\nHost: x\r\n"+headerLines+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	return resp.StatusCode, got
}

// TestAttackJSONMethodOverrideUTF7: the proxy refuses a JSON POST whose
// "_method" a framework would run, but reads the body as UTF-8; sent as
// charset=utf-7 the field is hidden in a "+…-" run, and an Express
// upstream (express.json() decodes UTF-7) runs DELETE, which the policy
// denies.
func TestAttackJSONMethodOverrideUTF7(t *testing.T) {
	e := newAttackEnv(t)
	dial := proxyFor(t, e, startExpressOverride(t))

	hidden := `","_method":"DELETE","z":"`
	u := utf16.Encode([]rune(hidden))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.BigEndian.PutUint16(b[2*i:], c)
	}
	body := `{"q":"x+` + strings.TrimRight(base64.StdEncoding.EncodeToString(b), "=") + `-"}`
	send := func(ct, body string) (int, string) { return postVia(t, dial, "Content-Type: "+ct+"\r\n", body) }
	// the plain form is refused
	if st, got := send("application/json", `{"q":"x","_method":"DELETE"}`); st != 400 {
		t.Fatalf("plain _method: %d %q, want 400", st, got)
	}
	if st, got := send("application/json; charset=utf-7", body); st == 200 {
		t.Fatalf("the proxy forwarded it and the Express upstream answered %q (the policy denies DELETE)", got)
	}
}

// TestAttackJSONMethodOverrideGzip: the same "_method" field in a
// gzip-compressed JSON body. The verifier reads the compressed bytes
// (no "_method" in them); express.json() inflates the body and the
// upstream runs DELETE.
func TestAttackJSONMethodOverrideGzip(t *testing.T) {
	e := newAttackEnv(t)
	dial := proxyFor(t, e, startExpressOverride(t))
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write([]byte(`{"q":"x","_method":"DELETE"}`))
	zw.Close()
	// express inflates it: the app sees the field
	if st, got := postVia(t, dial, "Content-Type: application/json\r\n", `{"q":"x"}`); st != 200 || !strings.Contains(got, "ran POST") {
		t.Fatalf("a plain JSON POST: %d %q, want it to reach Express", st, got)
	}
	if st, got := postVia(t, dial, "Content-Type: application/json\r\nContent-Encoding: gzip\r\n", zb.String()); st == 200 || strings.Contains(got, "ran DELETE") {
		t.Fatalf("the proxy forwarded a gzip JSON body and the Express upstream answered %d %q (the policy denies DELETE)", st, got)
	}
}

// TestBodyContentTypeRefusedByEveryFrontend: a decided body (an MCP
// message, a JSON POST read for "_method") in a charset other than UTF-8,
// with a Content-Type that cannot be read or is sent twice, or with a
// Content-Encoding, is refused with 415 by the proxy (the middleware's
// adapter) and by ext_authz — a JSON-RPC error carrying the message's id
// on the MCP path — and audited; UTF-8 in its usual spellings passes.
func TestBodyContentTypeRefusedByEveryFrontend(t *testing.T) {
	e := newAttackEnv(t)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(logPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e.v.Audit = w
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, `{"jsonrpc":"2.0","id":7,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	dial := proxyFor(t, e, up.URL)
	const mcpBody = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs"}}`
	const jsonBody = `{"q":"x"}`
	refused := 0
	for _, tc := range []struct {
		name, path string
		headers    [][2]string
		want       int // 200 or 415
	}{
		{"MCP no Content-Type", "/mcp", nil, 200},
		{"MCP application/json", "/mcp", [][2]string{{"Content-Type", "application/json"}}, 200},
		{"MCP charset UTF-8 quoted", "/mcp", [][2]string{{"Content-Type", `application/json; charset="UTF-8"`}}, 200},
		{"MCP charset utf-7", "/mcp", [][2]string{{"Content-Type", "application/json; charset=utf-7"}}, 415},
		{"MCP charset utf-16", "/mcp", [][2]string{{"Content-Type", "application/json; charset=utf-16"}}, 415},
		{"MCP malformed parameter", "/mcp", [][2]string{{"Content-Type", "application/json; charset=utf-8;;"}}, 415},
		{"MCP two Content-Types", "/mcp", [][2]string{{"Content-Type", "application/json"}, {"Content-Type", "application/json; charset=utf-7"}}, 415},
		{"MCP gzip", "/mcp", [][2]string{{"Content-Type", "application/json"}, {"Content-Encoding", "gzip"}}, 415},
		{"JSON charset utf-8", "/kb/docs/1", [][2]string{{"Content-Type", "application/json; charset=utf-8"}}, 200},
		{"JSON charset utf-7", "/kb/docs/1", [][2]string{{"Content-Type", "application/json; charset=utf-7"}}, 415},
		{"JSON deflate", "/kb/docs/1", [][2]string{{"Content-Type", "application/json"}, {"Content-Encoding", "deflate"}}, 415},
		{"form charset iso-8859-1", "/kb/docs/1", [][2]string{{"Content-Type", "application/x-www-form-urlencoded; charset=iso-8859-1"}}, 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, lines, envoy := jsonBody, "", map[string]string{}
			if tc.path == "/mcp" {
				body = mcpBody
				lines = "Accept: application/json, text/event-stream\r\n"
			}
			for _, h := range tc.headers {
				lines += h[0] + ": " + h[1] + "\r\n"
				if k := strings.ToLower(h[0]); envoy[k] != "" {
					envoy[k] += "," + h[1] // as Envoy joins repeated headers
				} else {
					envoy[k] = h[1]
				}
			}
			before := hits.Load()
			conn := dial()
			resp, got := exchangeRaw(t, conn, bufio.NewReader(conn), "POST "+tc.path+" HTTP/1.1\r\nHost: x\r\n"+lines+
				"Content-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
			if resp.StatusCode != tc.want {
				t.Fatalf("proxy: %d %q, want %d", resp.StatusCode, got, tc.want)
			}
			if tc.want == 200 {
				if hits.Load() != before+1 {
					t.Fatal("proxy: allowed but not forwarded")
				}
			} else {
				refused++
				if hits.Load() != before {
					t.Fatal("proxy: refused but forwarded")
				}
				if !strings.Contains(got, "Content-") || !strings.Contains(resp.Header.Get("X-Agentid-Deny-Reason"), "bad_request: Content-") {
					t.Fatalf("proxy: %q (reason %q) does not say what was refused", got, resp.Header.Get("X-Agentid-Deny-Reason"))
				}
				if tc.path == "/mcp" && (!strings.Contains(got, `"id":7,"error":{"code":-32600`) || resp.Header.Get("Content-Type") != "application/json") {
					t.Fatalf("proxy: %q is not a JSON-RPC error for the message's id", got)
				}
			}
			r := e.extAuthz(t, checkReq(e.certPEM, "POST", tc.path, envoy, body))
			if tc.want == 200 {
				if r.GetOkResponse() == nil {
					t.Fatalf("ext_authz: %v", r)
				}
				return
			}
			refused++
			if code.Code(r.GetStatus().GetCode()) != code.Code_INVALID_ARGUMENT || r.GetDeniedResponse().GetStatus().GetCode() != 415 || !strings.Contains(r.GetStatus().GetMessage(), "Content-") {
				t.Fatalf("ext_authz: %v, want INVALID_ARGUMENT with 415", r)
			}
		})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		var rec struct{ Type, Peer, Reason, Decision string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Type == "decision" && strings.HasPrefix(rec.Reason, "bad_request: Content-") {
			n++
			if rec.Decision != "deny" || rec.Peer == "" {
				t.Fatalf("record %+v", rec)
			}
		}
	}
	if n != refused {
		t.Fatalf("%d refusals audited, want %d", n, refused)
	}
}

// TestCheckAPISignedBodyCharsetRefused: the check API decides a service's
// received request (its "request" with headers and body) by the same rule:
// a JSON body in another charset, or compressed, is refused (415), since
// the service's framework may read a "_method" in it that the verifier
// cannot see.
func TestCheckAPISignedBodyCharsetRefused(t *testing.T) {
	e := newAttackEnv(t)
	for _, tc := range []struct {
		headers http.Header
		want    int
	}{
		{http.Header{"Content-Type": {"application/json; charset=utf-8"}}, 200},
		{http.Header{"Content-Type": {"application/json; charset=utf-7"}}, 415},
		{http.Header{"Content-Type": {"application/json", "application/json"}}, 415},
		{http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, 415},
	} {
		q := &verifier.Query{
			Frontend:   verifier.FrontendCheckAPI,
			Credential: verifier.Credential{Kind: verifier.CredentialPEM, Value: e.certPEM},
			Action:     verifier.Action{Kind: "http", Method: "POST", Path: "/kb/docs/1"},
			Signed: &verifier.SignedRequest{Message: httpsig.Message{Method: "POST", TargetURI: "https://kb/kb/docs/1", Header: tc.headers},
				Body: []byte(`{"q":"x"}`), BodyKnown: true},
			Request: verifier.Request{Headers: tc.headers},
		}
		r := e.v.Decide(context.Background(), q)
		if r.HTTPStatus() != tc.want {
			t.Fatalf("%v: %d %s, want %d", tc.headers, r.HTTPStatus(), r.Message(), tc.want)
		}
	}
}
