package mcpgw

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/agentid/agentid/verifier"
)

// BenchmarkCallChecks is what this package's per-call checks added for
// issue 14's gaps cost a tools/call: the Mcp-Param-* check (stale, check)
// and the session's in-flight mark (enter), for a 2025-11-25 call without
// mirrored headers and a 2026-07-28 call mirroring two arguments.
func BenchmarkCallChecks(b *testing.B) {
	var p paramSchemas
	p.record([]json.RawMessage{
		json.RawMessage(`{"name":"echo","inputSchema":{"type":"object"}}`),
		json.RawMessage(`{"name":"query","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"opts":{"type":"object","properties":{"shard":{"type":"integer","x-mcp-header":"Shard"}}}}}}`),
	})
	base := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
		"Authorization": {"Bearer x"}, "Mcp-Session-Id": {"abc"}, "User-Agent": {"Go-http-client/1.1"}}
	for _, c := range []struct {
		name string
		hdr  http.Header
		m    verifier.MCPMessage
	}{
		{"2025-11-25", with(base, "Mcp-Protocol-Version", "2025-11-25"), verifier.MCPMessage{Method: "tools/call", Name: "echo", Arguments: []byte(`{"text":"hi"}`)}},
		{"2026-07-28-two-params", with(base, "Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "query", "Mcp-Param-Region", "us-west1", "Mcp-Param-Shard", "3"),
			verifier.MCPMessage{Method: "tools/call", Name: "query", Arguments: []byte(`{"region":"us-west1","sql":"SELECT 1","opts":{"shard":3}}`)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := newSessions(0)
			b.ReportAllocs()
			for b.Loop() {
				if p.stale(c.hdr, c.m.Name) || p.check(c.hdr, &c.m) != nil {
					b.Fatal("refused")
				}
				s.enter("abc")()
			}
		})
	}
}

func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// TestPrimitiveEqual: the header forms of the JSON values an argument
// may hold (strings with and without escapes, booleans, integers compared
// as numbers); anything else mirrors nothing.
func TestPrimitiveEqual(t *testing.T) {
	for _, c := range []struct {
		hdr, raw string
		want     bool
	}{
		{"us-west1", `"us-west1"`, true},
		{"Zürich ", `"Zürich "`, true},
		{"Zürich", `"Z\u00fcrich"`, true},
		{"a\"b", `"a\"b"`, true},
		{"us", `"us-west1"`, false},
		{"true", `true`, true},
		{"True", `true`, false},
		{"false", `true`, false},
		{"3", `3`, true},
		{"3.0", `3`, true},
		{"3", `3.0`, true},
		{"4", `3`, false},
		{"3.5", `3.5`, false}, // a number, not an integer
		{"9007199254740993", `9007199254740993`, false},
		{"null", `null`, false},
		{"{}", `{}`, false},
		{"x", ``, false},
	} {
		if got := primitiveEqual(c.hdr, []byte(c.raw)); got != c.want {
			t.Errorf("primitiveEqual(%q, %s) = %v, want %v", c.hdr, c.raw, got, c.want)
		}
	}
}
