package mcpgw

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

// FuzzJSONString: jsonString decodes what encoding/json decodes, and
// refuses what it refuses.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{`"agentid-gateway-1"`, `"a\"b"`, `"\u00e9"`, `"é"`, "\"\x01\"", `"`, `""`, `"a"b"`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || stringEnd(raw, 0) != len(raw) {
			return // not what eachTopLevel hands on as a string value
		}
		got, ok := jsonString(raw)
		var want string
		werr := json.Unmarshal(raw, &want)
		if ok != (werr == nil) || (ok && string(got) != want) {
			t.Fatalf("%q: jsonString %q %v, encoding/json %q %v", raw, got, ok, want, werr)
		}
	})
}

// FuzzCanonicalKey: canonicalKey is http.CanonicalHeaderKey.
func FuzzCanonicalKey(f *testing.F) {
	for _, s := range []string{"Content-Type", "content-type", "X-Agentid-Task", "Mcp-Session-Id", "MCP-SESSION-ID", "X-1a", "a b", "x_y", "", "-", "Www-Authenticate", "WWW-Authenticate"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if got, want := canonicalKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Fatalf("%q: canonicalKey %q, CanonicalHeaderKey %q", k, got, want)
		}
	})
}

// TestCopyHeaders: every value but the dropped headers' (in any case),
// each header's values its own (appending to one changes no other).
func TestCopyHeaders(t *testing.T) {
	src := http.Header{"Accept": {"a", "b"}, "authorization": {"Bearer x"}, "Mcp-Session-Id": {"s"}, "X-Custom": {"c"}}
	dst := http.Header{}
	copyHeaders(dst, src, requestDrop)
	if len(dst) != 3 || !slices.Equal(dst["Accept"], []string{"a", "b"}) || dst.Get("Mcp-Session-Id") != "s" || dst.Get("X-Custom") != "c" || dst["authorization"] != nil {
		t.Fatalf("%v", dst)
	}
	dst["Accept"] = append(dst["Accept"], "z")
	dst.Add("Mcp-Session-Id", "t")
	if !slices.Equal(dst["Mcp-Session-Id"], []string{"s", "t"}) || !slices.Equal(dst["X-Custom"], []string{"c"}) || !slices.Equal(src["Accept"], []string{"a", "b"}) {
		t.Fatalf("values shared: %v / %v", dst, src)
	}
}
