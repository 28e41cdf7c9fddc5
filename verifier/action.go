package verifier

import (
	"encoding/json"
	"strings"
)

// MaxMCPBody bounds the request body inspected for an MCP tool call.
const MaxMCPBody = 1 << 20

// MCPAction reads an MCP JSON-RPC request body; for a "tools/call" request
// it returns the action {Kind: "mcp", Name: <tool>}. Other MCP methods
// (initialize, tools/list, …) give {Kind: "mcp", Name: "", Method: <method>}.
// ok is false when the body is not a JSON-RPC request.
func MCPAction(body []byte) (a Action, ok bool) {
	if len(body) == 0 || len(body) > MaxMCPBody {
		return Action{}, false
	}
	var msg struct {
		JSONRPC string `json:"jsonrpc"`
		Method  string `json:"method"`
		Params  struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.JSONRPC != "2.0" || msg.Method == "" {
		return Action{}, false
	}
	a = Action{Kind: "mcp", Method: msg.Method}
	if msg.Method == "tools/call" {
		a.Name = msg.Params.Name
	}
	return a, true
}

// stripQuery drops a path's query string and fragment.
func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}
