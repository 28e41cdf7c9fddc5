package mcpgw_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// querySchema mirrors two arguments into headers (MCP 2026-07-28,
// x-mcp-header): region at the top, shard one object down.
const querySchema = `{"type":"object","properties":{
  "region":{"type":"string","x-mcp-header":"Region"},
  "sql":{"type":"string"},
  "opts":{"type":"object","properties":{"shard":{"type":"integer","x-mcp-header":"Shard"}}}}}`

// TestGatewayParamHeaders: Mcp-Param-{Name} headers (MCP 2026-07-28,
// SEP-2243) are checked against the arguments they mirror, as the tool's
// inputSchema in the upstream's tools/list declares them: a header that
// disagrees with the body, one missing for a value in the body, one for a
// value the body does not have, one the tool does not declare, a
// malformed base64 value or one sent twice are refused 400 with
// HeaderMismatch (-32020) and audited, and never reach the upstream — a
// component behind the gateway routing on the header (a load balancer
// choosing the region) cannot be told another story than the policy
// decided. go-sdk's own client, which mirrors the headers, passes.
func TestGatewayParamHeaders(t *testing.T) {
	f := newFixture(t)
	s := mcp.NewServer(&mcp.Implementation{Name: "db", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "query", InputSchema: json.RawMessage(querySchema)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "rows"}}}, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	var mu sync.Mutex
	var seen []string // the sql of each tools/call that reached the upstream, with its Mcp-Param-Region
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			Method string
			Params struct{ Arguments struct{ SQL string } }
		}
		json.Unmarshal(body, &m)
		if m.Method == "tools/call" {
			mu.Lock()
			seen = append(seen, m.Params.Arguments.SQL+" "+r.Header.Get("Mcp-Param-Region"))
			mu.Unlock()
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)

	cs := connect(t, gw.URL, tok, nil)
	if got := cs.InitializeResult().ProtocolVersion; got != "2026-07-28" {
		t.Fatalf("protocol %q, want 2026-07-28 (the version with Mcp-Param headers)", got)
	}
	toolNames(t, cs) // the client learns the schema
	for _, region := range []string{"us-west1", "Zürich "} {
		if res, err := call(cs, "query", map[string]any{"region": region, "sql": "client " + region, "opts": map[string]any{"shard": 3}}); err != nil || res.IsError {
			t.Fatalf("go-sdk client, region %q: %+v %v", region, res, err)
		}
	}

	v26 := []string{"Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "query"}
	body := func(sql, args string) string {
		return `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"query","arguments":{"sql":"` + sql + `"` + args + `},` +
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	}
	for _, c := range []struct {
		name, sql, args string
		hdr             []string
		want            string
	}{
		{"disagrees", "r1", `,"region":"us-west1"`, []string{"Mcp-Param-Region", "eu-west1"}, "Mcp-Param-Region"},
		{"missing", "r2", `,"region":"us-west1"`, nil, "Mcp-Param-Region"},
		{"for an absent value", "r3", ``, []string{"Mcp-Param-Region", "us-west1"}, "Mcp-Param-Region"},
		{"for a null value", "r4", `,"region":null`, []string{"Mcp-Param-Region", "us-west1"}, "Mcp-Param-Region"},
		{"not declared", "r5", `,"region":"us-west1"`, []string{"Mcp-Param-Region", "us-west1", "Mcp-Param-Tenant", "acme"}, "Mcp-Param-Tenant"},
		{"base64 disagrees", "r6", `,"region":"us-west1"`, []string{"Mcp-Param-Region", "=?base64?ZXUtd2VzdDE=?="}, "Mcp-Param-Region"},
		{"bad base64", "r7", `,"region":"us-west1"`, []string{"Mcp-Param-Region", "=?base64?%%%?="}, "Mcp-Param-Region"},
		{"nested disagrees", "r8", `,"region":"us-west1","opts":{"shard":3}`, []string{"Mcp-Param-Region", "us-west1", "Mcp-Param-Shard", "4"}, "Mcp-Param-Shard"},
		{"a number, not an integer", "r9", `,"region":"us-west1","opts":{"shard":3.5}`, []string{"Mcp-Param-Region", "us-west1", "Mcp-Param-Shard", "3.5"}, "Mcp-Param-Shard"},
		{"older protocol, disagrees", "r10", `,"region":"us-west1"`, []string{"Mcp-Protocol-Version", "2025-11-25", "Mcp-Param-Region", "eu-west1"}, "Mcp-Param-Region"},
	} {
		hdr := append(append([]string(nil), v26...), c.hdr...)
		resp, out := rawReq(t, "POST", gw.URL, tok, "", body(c.sql, c.args), hdr...)
		if resp.StatusCode != 400 || !strings.Contains(out, `"code":-32020`) || !strings.Contains(out, c.want) {
			t.Errorf("%s: %d %s; want 400, -32020 naming %s", c.name, resp.StatusCode, out, c.want)
		}
	}
	// the same header twice
	req, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(body("r11", `,"region":"us-west1"`)))
	for i := 0; i+1 < len(v26); i += 2 {
		req.Header.Set(v26[i], v26[i+1])
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Add("Mcp-Param-Region", "us-west1")
	req.Header.Add("mcp-param-region", "eu-west1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(out), "-32020") {
		t.Errorf("Mcp-Param-Region twice: %d %s", resp.StatusCode, out)
	}
	// Mcp-Name disagreeing with the body: the same error code
	resp, out2 := rawReq(t, "POST", gw.URL, tok, "", body("r12", `,"region":"us-west1"`), "Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "other", "Mcp-Param-Region", "us-west1")
	if resp.StatusCode != 400 || !strings.Contains(out2, "-32020") || !strings.Contains(out2, "Mcp-Name") {
		t.Errorf("Mcp-Name disagrees: %d %s", resp.StatusCode, out2)
	}
	// agreeing headers pass: an integer compared as a number, base64 decoded
	for _, c := range [][]string{
		{"ok1", `,"region":"us-west1","opts":{"shard":3}`, "Mcp-Param-Region", "us-west1", "Mcp-Param-Shard", "3.0"},
		{"ok2", `,"region":"us-west1"`, "Mcp-Param-Region", "=?base64?dXMtd2VzdDE=?="},
		{"ok3", `,"region":null`},
	} {
		resp, out := rawReq(t, "POST", gw.URL, tok, "", body(c[0], c[1]), append(append([]string(nil), v26...), c[2:]...)...)
		if resp.StatusCode != 200 || strings.Contains(out, "-32020") {
			t.Errorf("%s: %d %s", c[0], resp.StatusCode, out)
		}
	}

	mu.Lock()
	got := strings.Join(seen, "|")
	mu.Unlock()
	if want := "client us-west1 us-west1|client Zürich  =?base64?WsO8cmljaCA=?=|ok1 us-west1|ok2 =?base64?dXMtd2VzdDE=?=|ok3 "; got != want {
		t.Fatalf("calls that reached the upstream:\n %q\nwant\n %q", got, want)
	}
	n := 0
	for _, r := range f.records(t) {
		if r.Decision == "deny" && r.Action.Name == "query" && strings.Contains(r.Reason, "bad_request: Mcp-Param-") {
			n++
		}
	}
	if n != 11 {
		t.Fatalf("%d audited Mcp-Param refusals, want 11", n)
	}
}
