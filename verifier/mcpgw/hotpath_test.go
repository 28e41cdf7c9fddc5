package mcpgw

import (
	"bytes"
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

// FuzzArrayItems: arrayItems splits a JSON array as encoding/json does
// into []json.RawMessage, and refuses what it refuses.
func FuzzArrayItems(f *testing.F) {
	for _, s := range []string{`[]`, ` [ 1 , "a,]" , {"b":[2,3]} , null ] `, `null`, `{}`, `"x"`, `[[],[{}]]`, `7`, `true`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return // filterMessage's Unmarshal validated it
		}
		var want []json.RawMessage
		werr := json.Unmarshal(raw, &want)
		got, ok := arrayItems(raw)
		if ok != (werr == nil) || len(got) != len(want) {
			t.Fatalf("%q: arrayItems %q %v, encoding/json %q %v", raw, got, ok, want, werr)
		}
		for i := range got {
			if string(got[i]) != string(want[i]) {
				t.Fatalf("%q: item %d %q, encoding/json %q", raw, i, got[i], want[i])
			}
		}
	})
}

// FuzzResultMessage: resultMessage writes what json.Marshal wrote (the
// same JSON value), with the agent's id as spelled.
func FuzzResultMessage(f *testing.F) {
	f.Add([]byte(`{"tools":[{"name":"a"}],"nextCursor":"c","_meta":{"x":"<&>"}}`), []byte(`1`))
	f.Add([]byte(`{"k\u00e9y":null,"a b":[1, 2]}`), []byte(`"id-\u0001"`))
	f.Fuzz(func(t *testing.T, result, id []byte) {
		var res map[string]json.RawMessage
		if json.Unmarshal(result, &res) != nil || res == nil || !json.Valid(id) {
			return
		}
		want, err := messageWithID(map[string]any{"jsonrpc": "2.0", "id": nil, "result": res}, id)
		if err != nil {
			return
		}
		got := resultMessage(id, res)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		json.Unmarshal(want, &w)
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if string(gj) != string(wj) {
			t.Fatalf("resultMessage %s, json.Marshal %s", got, want)
		}
		if _, old, _ := replaceTopLevel(got, "id", []byte(`0`)); string(old) != string(id) {
			t.Fatalf("%s: id %s, want %s", got, old, id)
		}
	})
}

// FuzzStringEnd: stringEnd finds the end a byte-by-byte scan finds (a
// backslash escapes the next byte), on any bytes.
func FuzzStringEnd(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b"`, `"a\\"b`, `"\\\"x"`, `"`, `"\`, `x"`, `"é\u0022\\\\"rest`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := -1
		if len(b) > 0 && b[0] == '"' {
			for i := 1; i < len(b); i++ {
				if b[i] == '\\' {
					i++
				} else if b[i] == '"' {
					want = i + 1
					break
				}
			}
		}
		if got := stringEnd(b, 0); got != want {
			t.Fatalf("%q: stringEnd %d, want %d", b, got, want)
		}
	})
}

// FuzzWithTopLevel: an answer event rebuilt in one pass is the event
// withData(replaceTopLevel(data)) builds, byte for byte.
func FuzzWithTopLevel(f *testing.F) {
	for _, s := range [][2]string{
		{"id: 7\nevent: message\ndata: {\"id\":\"agentid-gateway-1\",\"result\":{}}\n\n", `1`},
		{"data: {\"result\":\ndata: {\"a\":1},\ndata:  \"id\" : \"x\", \"id\":2}\n\n", `"a\nb"`},
		{"retry: 10\ndata:{}\n\n", `{"k":[1,2]}`},
		{"data: [1]\n\n", `3`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, in, val []byte) {
		rd := newSSEReader(bytes.NewReader(in), 1<<16)
		defer rd.release()
		ev, err := rd.next()
		if err != nil || !ev.hasData {
			return
		}
		got, ok := ev.withTopLevel("id", val)
		out, _, wok := replaceTopLevel(ev.data, "id", val)
		if ok != wok {
			t.Fatalf("%q: withTopLevel %v, replaceTopLevel %v", in, ok, wok)
		}
		if ok && !bytes.Equal(got, ev.withData(out)) {
			t.Fatalf("%q:\n got %q\nwant %q", in, got, ev.withData(out))
		}
	})
}
