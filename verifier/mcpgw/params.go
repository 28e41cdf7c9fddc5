package mcpgw

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// CodeHeaderMismatch is MCP's JSON-RPC error for a request whose
// Mcp-Method, Mcp-Name or Mcp-Param-{Name} headers disagree with its body
// (2026-07-28, HeaderMismatch); the answer is HTTP 400.
const CodeHeaderMismatch = -32020

// headerParamPrefix starts the headers that mirror tool arguments
// (x-mcp-header in the tool's inputSchema; MCP 2026-07-28, SEP-2243).
const headerParamPrefix = "Mcp-Param-"

// paramsFrom is the first protocol version whose clients must send the
// Mcp-Param headers of the arguments they pass.
const paramsFrom = "2026-07-28"

// paramBinding is one argument a tool mirrors into a header: the path of
// "properties" keys to it in the arguments, and the header's name.
type paramBinding struct {
	path   []string
	header string // canonical: "Mcp-Param-Region"
}

// paramSchemas is the upstream's x-mcp-header bindings of each tool it
// listed (an empty slice for a tool without any). They are learnt from
// the same lists as the tool names.
type paramSchemas struct {
	mu    sync.RWMutex
	tools map[string][]paramBinding
}

// record takes the bindings of each tool in a tools/list page.
func (p *paramSchemas) record(items []json.RawMessage) {
	type prop struct {
		Header     json.RawMessage `json:"x-mcp-header"`
		Properties map[string]json.RawMessage
	}
	var walk func(props map[string]json.RawMessage, prefix []string, out []paramBinding) []paramBinding
	walk = func(props map[string]json.RawMessage, prefix []string, out []paramBinding) []paramBinding {
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var pr prop
			if json.Unmarshal(props[k], &pr) != nil {
				continue
			}
			path := append(slices.Clone(prefix), k)
			var name string
			if json.Unmarshal(pr.Header, &name) == nil && name != "" {
				out = append(out, paramBinding{path: path, header: http.CanonicalHeaderKey(headerParamPrefix + name)})
			}
			out = walk(pr.Properties, path, out)
		}
		return out
	}
	found := map[string][]paramBinding{}
	for _, it := range items {
		var tool struct {
			Name        string `json:"name"`
			InputSchema struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"inputSchema"`
		}
		if json.Unmarshal(it, &tool) != nil || tool.Name == "" {
			continue
		}
		found[tool.Name] = walk(tool.InputSchema.Properties, nil, []paramBinding{})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tools == nil || len(p.tools)+len(found) > maxToolNames {
		p.tools = make(map[string][]paramBinding, len(found))
	}
	for k, v := range found {
		p.tools[k] = v
	}
}

func (p *paramSchemas) get(tool string) ([]paramBinding, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	b, ok := p.tools[tool]
	return b, ok
}

// paramHeaders is the request's Mcp-Param-* headers by canonical name.
func paramHeaders(h http.Header) map[string][]string {
	var out map[string][]string
	for k, vs := range h {
		if len(k) > len(headerParamPrefix) && strings.EqualFold(k[:len(headerParamPrefix)], headerParamPrefix) {
			if out == nil {
				out = map[string][]string{}
			}
			ck := http.CanonicalHeaderKey(k)
			out[ck] = append(out[ck], vs...)
		}
	}
	return out
}

// stale reports whether the gateway must list the upstream's tools again
// before checking the call's Mcp-Param headers: it does not know the
// tool's schema, or the request carries a header the schema it knows
// does not declare (the tool may have changed).
func (p *paramSchemas) stale(h http.Header, tool string) bool {
	hdrs := paramHeaders(h)
	if hdrs == nil && h.Get(headerVersion) < paramsFrom {
		return false
	}
	b, ok := p.get(tool)
	if !ok {
		return true
	}
	for k := range hdrs {
		if !slices.ContainsFunc(b, func(pb paramBinding) bool { return pb.header == k }) {
			return true
		}
	}
	return false
}

// check compares the call's Mcp-Param headers with the arguments they
// mirror, as go-sdk's server does and more strictly: headers are
// checked whatever the protocol version they come with (required from
// 2026-07-28 on), one the tool does not declare is refused, and so is
// a header sent twice. The refusal's What names the header.
func (p *paramSchemas) check(h http.Header, m *verifier.MCPMessage) *verifier.InputError {
	hdrs := paramHeaders(h)
	required := h.Get(headerVersion) >= paramsFrom
	if hdrs == nil && !required {
		return nil
	}
	bindings, known := p.get(m.Name)
	if !known {
		if hdrs == nil {
			return nil // a tool without a listed schema mirrors nothing the gateway knows of
		}
		return mismatch(headerParamPrefix+"*", "the upstream's tools/list does not describe %q, so its Mcp-Param headers cannot be checked", m.Name)
	}
	names := make([]string, 0, len(hdrs))
	for k := range hdrs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if len(hdrs[k]) != 1 {
			return mismatch(k, "sent %d times", len(hdrs[k]))
		}
		if !slices.ContainsFunc(bindings, func(b paramBinding) bool { return b.header == k }) {
			return mismatch(k, "tool %q declares no such header (x-mcp-header) in its inputSchema", m.Name)
		}
	}
	for _, b := range bindings {
		raw, present := lookupPath(m.Arguments, b.path)
		vals, sent := hdrs[b.header]
		where := strings.Join(b.path, ".")
		switch {
		case !present || string(raw) == "null":
			if sent {
				return mismatch(b.header, "sent for argument %q, which the body does not have", where)
			}
		case !sent:
			if required || hdrs != nil {
				return mismatch(b.header, "missing for argument %q, which the body has", where)
			}
		default:
			v, err := decodeParam(vals[0])
			if err != nil {
				return mismatch(b.header, "%v", err)
			}
			if !primitiveEqual(v, raw) {
				return mismatch(b.header, "header %q disagrees with the body's argument %q", truncateBytes([]byte(v)), where)
			}
		}
	}
	return nil
}

func mismatch(header, format string, args ...any) *verifier.InputError {
	return &verifier.InputError{What: header, Detail: fmt.Sprintf(format, args...)}
}

// lookupPath is the value at path (object keys) in the arguments, as
// sent; ParseMCP refused duplicate and case-variant keys, so a key is
// found once.
func lookupPath(args []byte, path []string) ([]byte, bool) {
	cur := args
	for _, k := range path {
		var next []byte
		if !eachTopLevel(cur, func(key []byte, s, e int) {
			if keyIs(key, k) {
				next = cur[s:e]
			}
		}) || next == nil {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// decodeParam is a header value with the "=?base64?…?=" form decoded.
func decodeParam(v string) (string, error) {
	enc, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, nil
	}
	enc, ok = strings.CutSuffix(enc, "?=")
	raw, err := base64.StdEncoding.DecodeString(enc)
	if !ok || err != nil {
		return "", errors.New("malformed =?base64? value")
	}
	return string(raw), nil
}

// maxSafeInteger bounds the integers an x-mcp-header argument may hold
// (JavaScript's safe range).
const maxSafeInteger = 1<<53 - 1

// primitiveEqual reports whether the decoded header v mirrors the JSON
// value raw: a string as itself, a boolean as "true"/"false", an integer
// compared as a number ("3.0" mirrors 3). Anything else mirrors nothing.
func primitiveEqual(v string, raw []byte) bool {
	switch {
	case len(raw) == 0:
		return false
	case raw[0] == '"':
		if !bytes.ContainsRune(raw, '\\') { // no escapes: the bytes are the string
			return len(raw) >= 2 && v == string(raw[1:len(raw)-1])
		}
		var b string
		return json.Unmarshal(raw, &b) == nil && v == b
	case string(raw) == "true", string(raw) == "false":
		return v == string(raw)
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		b, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || b != math.Trunc(b) || math.Abs(b) > maxSafeInteger {
			return false
		}
		h, err := strconv.ParseFloat(v, 64)
		return err == nil && h == b
	}
	return false
}

// isHeaderMismatch reports whether a refused input is an MCP header
// that disagrees with the body (Mcp-Method, Mcp-Name, Mcp-Param-*).
func isHeaderMismatch(err error) bool {
	var ie *verifier.InputError
	if !errors.As(err, &ie) || ie == nil { // q.Reject may be a nil *InputError
		return false
	}
	return ie.What == "Mcp-Method" || ie.What == "Mcp-Name" || strings.HasPrefix(ie.What, headerParamPrefix)
}

// writeHeaderMismatch answers a request refused for its MCP headers as
// the specification asks: HTTP 400 with the JSON-RPC error
// HeaderMismatch (-32020), the refusal (naming the header) as data.
func writeHeaderMismatch(w http.ResponseWriter, res *verifier.Result) {
	e := mcpauth.RefusalError(res)
	var je *jsonrpc.Error
	if errors.As(e, &je) {
		c := *je
		c.Code = CodeHeaderMismatch
		e = &c
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(orNull(res.MCPID)), "error": e})
}

func orNull(id []byte) []byte {
	if len(id) == 0 {
		return []byte("null")
	}
	return id
}
