package verifier

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/policies"
)

// MaxMCPBody bounds an MCP request body; a larger one is refused (413),
// never decided as something else.
const MaxMCPBody = 1 << 20

// maxMCPDepth bounds the nesting of an MCP message.
const maxMCPDepth = 64

// MCPMessage is one JSON-RPC message read the way a case-sensitive MCP
// server reads it (the official Go, TypeScript and Python SDKs).
type MCPMessage struct {
	// Method is "" for a response (result or error).
	Method string
	// ID is the JSON of the id ("" for a notification).
	ID []byte
	// Name is params.name (tools/call, prompts/get) and URI params.uri
	// (resources/read, resources/subscribe, resources/unsubscribe).
	Name, URI string
	// Arguments is the JSON of params.arguments (nil when absent).
	Arguments json.RawMessage
}

// Action is the policy action for m on path: {mcp, method, name}, where
// the name is the tool's (tools/call, with the arguments), the prompt's
// (prompts/get) or the resource URI (resources/read, resources/subscribe,
// resources/unsubscribe). The policy's tool patterns match tools/call
// only, so a tool pattern can never match a prompt or a resource.
func (m MCPMessage) Action(path string) Action {
	a := Action{Kind: policies.KindMCP, Method: m.Method, Path: path}
	switch m.Method {
	case policies.MCPToolsCall:
		a.Name, a.Arguments = m.Name, string(m.Arguments)
	case policies.MCPPromptsGet:
		a.Name = m.Name
	case policies.MCPResourceRead, "resources/subscribe", "resources/unsubscribe":
		a.Name = m.URI
	}
	return a
}

// ParseMCP reads exactly one JSON-RPC 2.0 message from body, strictly:
// keys are matched case-sensitively, and a duplicate or case-variant key
// anywhere in the message ({"name":…,"Name":…}) is refused, as are batches,
// trailing data, bodies over MaxMCPBody and nesting over 64 levels — every
// form that encoding/json and a case-sensitive server would read
// differently. headers are the request's (any case): when they carry
// Mcp-Method or Mcp-Name (MCP 2026-07-28, SEP-2243) these must agree with
// the body, and from protocol version 2026-07-28 on they are required.
// A resource URI that is not canonical (CheckResourceURI: "..",
// "%2e%2e", "//" in a file: or http(s): URI) is refused. When headers are
// given, a Content-Type with a charset other than UTF-8 (or that cannot be
// read, or sent twice) and a Content-Encoding other than identity are
// refused (HTTP 415): the body is read as UTF-8, as it arrived, and a
// server honouring either would read another message (contenttype.go).
func ParseMCP(body []byte, headers map[string][]string) (MCPMessage, error) {
	m, err := parseMCP(body, headers)
	if bad := checkBodyHeaders(headers, nil); bad != nil {
		return MCPMessage{ID: m.ID}, bad // the id, if any, for the JSON-RPC error
	}
	return m, err
}

func parseMCP(body []byte, headers map[string][]string) (MCPMessage, error) {
	if len(body) > MaxMCPBody {
		return MCPMessage{}, tooLarge("MCP body", len(body), MaxMCPBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return MCPMessage{}, badInput("MCP body", "empty: one JSON-RPC request expected")
	}
	if bytes.TrimLeft(body, " \t\r\n")[0] == '[' {
		return MCPMessage{}, badInput("MCP body", "JSON-RPC batches are refused: send one request per POST")
	}
	v, err := strictjson.Decode(body, maxMCPDepth, 2) // the envelope and params; deeper as raw bytes
	if err != nil {
		return MCPMessage{}, badInput("MCP body", "%v", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return MCPMessage{}, badInput("MCP body", "not a JSON object")
	}
	m, err := mcpFields(obj)
	if err != nil {
		return m, badInput("MCP message", "%v", err)
	}
	if err := checkMCPHeaders(m, headers); err != nil {
		return m, err
	}
	return m, nil
}

// mcpEnvelopeKeys and mcpParamsKeys are the keys agentid reads; another
// spelling of one ("Params", "NAME") is refused, since a case-insensitive
// server would read it where agentid reads nothing.
var (
	mcpEnvelopeKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}
	mcpParamsKeys   = []string{"name", "uri", "arguments", "_meta"}
)

// Folded forms of the known keys (no two of which fold alike, so a key
// spelled exactly as one is no variant of another).
var (
	mcpEnvelopeFolded = foldAll(mcpEnvelopeKeys)
	mcpParamsFolded   = foldAll(mcpParamsKeys)
)

func foldAll(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strictjson.Fold(k)
	}
	return out
}

func checkSpelling(obj map[string]any, known, folded []string, where string) error {
	for k := range obj {
		if slices.Contains(known, k) {
			continue // the common case, without folding
		}
		fk := strictjson.Fold(k)
		for i, want := range folded {
			if fk == want {
				return errors.New(where + " key " + quote(k) + " is not " + quote(known[i]) + ": keys are case-sensitive")
			}
		}
	}
	return nil
}

func quote(s string) string { return strictjson.Quote(s) }

func mcpFields(obj map[string]any) (MCPMessage, error) {
	var m MCPMessage
	if err := checkSpelling(obj, mcpEnvelopeKeys, mcpEnvelopeFolded, "envelope"); err != nil {
		return m, err
	}
	if id, ok := obj["id"]; ok {
		switch id.(type) {
		case string, json.Number:
			m.ID, _ = json.Marshal(id)
		default:
			return m, errors.New(`"id" must be a string or a number`)
		}
	}
	if v, _ := obj["jsonrpc"].(string); v != "2.0" {
		return m, errors.New(`"jsonrpc" must be "2.0"`)
	}
	method, hasMethod := obj["method"]
	if !hasMethod {
		_, res := obj["result"]
		_, rerr := obj["error"]
		if m.ID == nil || res == rerr {
			return m, errors.New(`neither a request ("method") nor a response ("id" and one of "result", "error")`)
		}
		return m, nil
	}
	s, ok := method.(string)
	if !ok || s == "" {
		return m, errors.New(`"method" must be a non-empty string`)
	}
	if len(s) > MaxNameLen {
		return m, tooLarge("MCP method", len(s), MaxNameLen)
	}
	m.Method = s
	params := map[string]any{}
	if p, ok := obj["params"]; ok {
		if params, ok = p.(map[string]any); !ok {
			return m, errors.New(`"params" must be an object`)
		}
		if err := checkSpelling(params, mcpParamsKeys, mcpParamsFolded, "params"); err != nil {
			return m, err
		}
	}
	str := func(key string) (string, error) {
		v, ok := params[key].(string)
		if !ok || v == "" {
			return "", errors.New(`params."` + key + `" must be a non-empty string for ` + s)
		}
		if len(v) > MaxNameLen {
			return "", tooLarge("MCP "+key, len(v), MaxNameLen)
		}
		return v, nil
	}
	var err error
	switch s {
	case "tools/call":
		if m.Name, err = str("name"); err != nil {
			return m, err
		}
		if args, ok := params["arguments"]; ok {
			raw, isRaw := args.(json.RawMessage)
			if !isRaw || len(raw) == 0 || raw[0] != '{' {
				return m, errors.New(`params."arguments" must be an object`)
			}
			m.Arguments = raw
		}
	case "prompts/get":
		m.Name, err = str("name")
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if m.URI, err = str("uri"); err == nil {
			err = CheckResourceURI(m.URI)
		}
	}
	return m, err
}

// MCP headers of SEP-2243 (protocol 2026-07-28).
const (
	headerMCPMethod  = "Mcp-Method"
	headerMCPName    = "Mcp-Name"
	headerMCPVersion = "Mcp-Protocol-Version"
	// mcpHeadersFrom is the first protocol version that requires them.
	mcpHeadersFrom = "2026-07-28"
)

func checkMCPHeaders(m MCPMessage, headers map[string][]string) error {
	method, hasMethod, err := mcpHeader(headers, headerMCPMethod)
	if err != nil {
		return err
	}
	name, hasName, err := mcpHeader(headers, headerMCPName)
	if err != nil {
		return err
	}
	version, _, _ := mcpHeader(headers, headerMCPVersion)
	required := version >= mcpHeadersFrom && m.Method != ""
	if hasMethod && method != m.Method {
		return badInput("Mcp-Method", "header %q disagrees with the body's method %q", truncate(method), truncate(m.Method))
	}
	if required && !hasMethod {
		return badInput("Mcp-Method", "required from protocol %s on", mcpHeadersFrom)
	}
	want := m.Name
	if m.URI != "" {
		want = m.URI
	}
	if hasName && name != want {
		return badInput("Mcp-Name", "header %q disagrees with the body's %q", truncate(name), truncate(want))
	}
	if required && want != "" && !hasName {
		return badInput("Mcp-Name", "required for %s from protocol %s on", m.Method, mcpHeadersFrom)
	}
	return nil
}

// mcpHeader reads one header in any case; more than one value is refused,
// and a "=?base64?…?=" value is decoded (SEP-2243's form for non-ASCII).
func mcpHeader(headers map[string][]string, name string) (string, bool, error) {
	var vals []string
	for k, v := range headers {
		if strings.EqualFold(k, name) {
			vals = append(vals, v...)
		}
	}
	switch len(vals) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", true, badInput(name, "sent %d times", len(vals))
	}
	v := vals[0]
	if enc, ok := strings.CutPrefix(v, "=?base64?"); ok {
		enc, ok = strings.CutSuffix(enc, "?=")
		raw, err := base64.StdEncoding.DecodeString(enc)
		if !ok || err != nil {
			return "", true, badInput(name, "malformed =?base64? value")
		}
		v = string(raw)
	}
	return v, true, nil
}

// isMCPPath reports whether path is one of the MCP endpoints mcpPaths, or
// below one ("/mcp/x", "/mcp;v=1"), in any ASCII case ("/MCP"): upstreams
// that route those to the same endpoint (Express, ASP.NET Core and IIS
// route case-insensitively) must not see them decided as plain HTTP.
// Deciding more requests as MCP is only stricter.
func isMCPPath(mcpPaths []string, path string) bool {
	for _, m := range mcpPaths {
		m = strings.TrimSuffix(m, "/")
		if len(path) < len(m) || !asciiEqualFold(path[:len(m)], m) {
			continue
		}
		if rest := path[len(m):]; rest == "" || rest == "/" || rest[0] == '/' || rest[0] == ';' {
			return true
		}
	}
	return false
}

// asciiEqualFold is strings.EqualFold for ASCII letters only: "K" (the
// Kelvin sign) is not "k" to an HTTP router.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// readBody reads at most MaxMCPBody+1 bytes of an HTTP request body, so
// that an oversized one is seen as such, and leaves exactly those bytes
// as the body to forward.
func readBody(r *http.Request) ([]byte, error) { return readBodyMax(r, MaxMCPBody) }

// readBodyMax is readBody with the bound given: at most max+1 bytes.
func readBodyMax(r *http.Request, max int) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, err
}

// stripQuery drops a path's query string. A "#" is not cut: a request-
// target has no fragment (Go's server keeps "#" in r.URL.Path and
// forwards it escaped), so it stays in the path, where CanonicalPath
// refuses it.
func stripQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}
