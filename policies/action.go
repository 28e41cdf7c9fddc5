package policies

import (
	"slices"
	"strings"
)

// actionMatcher is a compiled action block: the action matches when any
// alternative does.
type actionMatcher struct {
	alts []actionAlt
}

// actionAlt is one http, grpc or generic block, or one argument of an mcp
// block (tools, prompts, resources, methods).
type actionAlt struct {
	kind    string
	methods []string // http methods, mcp methods; nil: any method
	pats    []glob   // http paths, grpc methods, mcp tools/prompts/resources, generic names; nil: any
	sel     mcpSel   // mcp: which names pats match
}

// mcpSel says what an mcp alternative's patterns match: the name of one
// kind of MCP request. A tool pattern never matches a prompt or a resource.
type mcpSel uint8

const (
	mcpAny       mcpSel = iota // any MCP message (of methods, when set)
	mcpTools                   // tools/call (or no method: an action built as "mcp TOOL")
	mcpPrompts                 // prompts/get
	mcpResources               // resources/read, resources/subscribe, resources/unsubscribe
)

var mcpSelNames = [...]string{"", "tools", "prompts", "resources"}

func (sel mcpSel) accepts(method string) bool {
	switch sel {
	case mcpTools:
		return method == MCPToolsCall || method == ""
	case mcpPrompts:
		return method == MCPPromptsGet
	case mcpResources:
		return method == MCPResourceRead || method == "resources/subscribe" || method == "resources/unsubscribe"
	}
	return true
}

func (m *actionMatcher) mismatch(a *Action, explain bool) string {
	for i := range m.alts {
		if m.alts[i].match(a) {
			return ""
		}
	}
	if !explain {
		return notMatched
	}
	var kinds []string
	for _, alt := range m.alts {
		kinds = append(kinds, alt.describe())
	}
	return why(true, "action: %s matches none of %s", describeAction(a), strings.Join(kinds, ", "))
}

func (alt *actionAlt) match(a *Action) bool {
	if a.Kind != alt.kind {
		return false
	}
	subject := a.Name
	switch alt.kind {
	case KindHTTP:
		if alt.methods != nil && !httpMethodIn(alt.methods, a.Method) {
			return false
		}
		subject = a.Path
	case KindGRPC:
		subject = a.Path
	case KindMCP:
		if !alt.sel.accepts(a.Method) || alt.methods != nil && !slices.Contains(alt.methods, a.Method) {
			return false
		}
	}
	return alt.pats == nil || matchAny(alt.pats, subject)
}

// httpMethodIn: m is one of methods, or HEAD where methods has GET —
// servers answer HEAD with their GET handler (Go's net/http, Express…),
// so a rule on GET covers HEAD: a deny on GET is not dodged with HEAD.
func httpMethodIn(methods []string, m string) bool {
	return slices.Contains(methods, m) || m == "HEAD" && slices.Contains(methods, "GET")
}

func (alt *actionAlt) describe() string {
	s := alt.kind
	if alt.sel != mcpAny {
		s += " " + mcpSelNames[alt.sel]
	}
	if alt.methods != nil {
		s += " " + strings.Join(alt.methods, "|")
	}
	if alt.pats != nil {
		s += " " + rawList(alt.pats)
	}
	return s
}

func describeAction(a *Action) string {
	switch a.Kind {
	case KindHTTP:
		return "http " + a.Method + " " + a.Path
	case KindGRPC:
		return "grpc " + a.Path
	case KindMCP:
		if a.Method != "" {
			return strings.TrimSpace("mcp " + a.Method + " " + a.Name)
		}
	}
	return a.Kind + " " + a.Name
}

// covers reports, conservatively, whether every action alt q matches also
// matches alt.
func (alt *actionAlt) covers(q *actionAlt) bool {
	if alt.kind != q.kind || alt.sel != mcpAny && alt.sel != q.sel {
		return false
	}
	if alt.sel == mcpAny && q.sel != mcpAny && alt.methods != nil {
		return false // conservative: a tools pattern also matches an action without method
	}
	if alt.methods != nil && (q.methods == nil || !subsetOf(q.methods, alt.methods)) {
		return false
	}
	return globsCover(alt.pats, q.pats)
}

// globsCover reports whether every string matched by one of qs (nil: all)
// is matched by one of ps (nil: all).
func globsCover(ps, qs []glob) bool {
	if ps == nil {
		return true
	}
	if qs == nil {
		return false
	}
	for i := range qs {
		ok := false
		for j := range ps {
			if ps[j].covers(&qs[i]) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func subsetOf(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}
