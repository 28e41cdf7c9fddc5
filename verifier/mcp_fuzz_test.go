package verifier

import (
	"encoding/json"
	"testing"
)

// FuzzParseMCP: whatever ParseMCP accepts, encoding/json (the reader that
// matches keys case-insensitively and keeps the last duplicate) reads as
// the same method and tool name, so the two kinds of MCP server that sit
// behind a verifier run what was decided.
func FuzzParseMCP(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell","Name":"search"}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"a","result":{}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"s","arguments":{"q":"a"},"argument\u017f":{"q":"b"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseMCP(body, nil)
		if err != nil {
			return
		}
		var loose struct {
			Method string `json:"method"`
			Params struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"params"`
		}
		if err := json.Unmarshal(body, &loose); err != nil {
			t.Fatalf("accepted %q, encoding/json refuses it: %v", body, err)
		}
		if loose.Method != m.Method || (m.Method == "tools/call" && (loose.Params.Name != m.Name || string(loose.Params.Arguments) != string(m.Arguments))) {
			t.Fatalf("accepted %q as %q/%q, encoding/json reads %q/%q", body, m.Method, m.Name, loose.Method, loose.Params.Name)
		}
	})
}
