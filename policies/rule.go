package policies

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// rule is a compiled rule block.
type rule struct {
	ref    RuleRef
	refs   []RuleRef // []RuleRef{ref}, shared by decisions
	strs   []string  // []string{ref.String()}, shared by decisions
	index  int32
	effect Effect
	reason string
	peer   *peerMatcher   // nil: any peer
	action *actionMatcher // nil: any action
	subj   *entityMatcher // nil: any subject
	res    *entityMatcher // nil: any resource
	cond   *condition     // nil: no condition
	// requireSig: require_signature = true (allow rules only)
	requireSig bool
	// lint data: canonical text of each peer attribute
	peerText map[string]string
	def      hcl.Range
}

var ruleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "effect", Required: true}, {Name: "reason"}, {Name: "condition"}, {Name: "require_signature"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "peer"}, {Type: "action"}, {Type: "subject"}, {Type: "resource"}},
}

func (l *loader) rule(b *hcl.Block) *rule {
	content, diags := b.Body.Content(ruleSchema)
	l.diags = append(l.diags, diags...)
	r := &rule{def: b.DefRange}
	r.ref = RuleRef{Name: b.Labels[0], File: b.DefRange.Filename, Line: b.DefRange.Start.Line}
	before := len(l.diags) - len(diags)
	if a := content.Attributes["effect"]; a != nil {
		l.effect(r, a)
	}
	r.ref.Effect = r.effect
	r.refs = []RuleRef{r.ref}
	r.strs = []string{r.ref.String()}
	r.reason = r.effect.String() + " by rule " + r.ref.Name
	if a := content.Attributes["reason"]; a != nil {
		if s, ok := l.str(a); ok && s != "" {
			r.reason = s
		}
	}
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "peer":
			if r.peer != nil {
				l.errorf(blk.DefRange, "Duplicate peer block", "A rule has at most one peer block; put all peer requirements in one.")
				continue
			}
			r.peer, r.peerText = l.peerBlock(blk, r.effect)
		case "action":
			if r.action != nil {
				l.errorf(blk.DefRange, "Duplicate action block", "A rule has at most one action block; list alternatives (http, grpc, mcp, generic) inside it.")
				continue
			}
			r.action = l.actionBlock(blk)
		case "subject", "resource":
			dst := &r.subj
			if blk.Type == "resource" {
				dst = &r.res
			}
			if *dst != nil {
				l.errorf(blk.DefRange, "Duplicate "+blk.Type+" block", "A rule has at most one %s block.", blk.Type)
				continue
			}
			*dst = l.entityBlock(blk)
		}
	}
	if a := content.Attributes["condition"]; a != nil {
		r.cond = l.condition(a)
	}
	if a := content.Attributes["require_signature"]; a != nil {
		r.requireSig = l.boolean(a)
		if r.effect == Deny {
			l.errorf(a.Range, "require_signature in a deny rule", "require_signature applies to allow rules: a deny rule refuses whether or not the request is signed.")
		}
	}
	if hasErrors(l.diags[before:]) {
		return nil
	}
	return r
}

func hasErrors(d hcl.Diagnostics) bool { return d.HasErrors() }

func (l *loader) effect(r *rule, a *hcl.Attribute) {
	s, ok := l.str(a)
	if !ok {
		return
	}
	switch s {
	case "allow":
		r.effect = Allow
	case "deny":
		r.effect = Deny
	default:
		l.errorf(a.Expr.Range(), "Invalid effect", "The effect must be \"allow\" or \"deny\".%s", didYouMean(s, []string{"allow", "deny"}))
	}
}

var peerSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "spiffe_id"}, {Name: "trust_domain"}, {Name: "agent"}, {Name: "task"}, {Name: "model"},
	{Name: "prompt"}, {Name: "scopes_all"}, {Name: "scopes_any"}, {Name: "principal"},
	{Name: "min_depth"}, {Name: "max_depth"}, {Name: "delegators_allowed"}, {Name: "delegators_forbidden"}, {Name: "delegated_by"},
	{Name: "chain_root"}, {Name: "min_deadline_remaining"}, {Name: "task_required"},
}}

func (l *loader) peerBlock(b *hcl.Block, eff Effect) (*peerMatcher, map[string]string) {
	content, diags := b.Body.Content(peerSchema)
	l.diags = append(l.diags, diags...)
	if a, ok := content.Attributes["delegators_forbidden"]; ok && eff == Deny {
		l.warnf(a.NameRange, "Inverted requirement", "In a deny rule, delegators_forbidden makes the rule deny the tasks that those delegators did NOT delegate. Did you mean delegated_by?")
	}
	m := &peerMatcher{minDepth: -1, maxDepth: -1}
	text := map[string]string{}
	for name, a := range content.Attributes {
		text[name] = l.sourceText(a.Expr.Range())
		if name != "spiffe_id" && name != "trust_domain" && name != "task_required" {
			m.needClaims = true
		}
		l.peerAttr(m, name, a)
	}
	if m.minDepth >= 0 && m.maxDepth >= 0 && m.minDepth > m.maxDepth {
		l.errorf(content.Attributes["min_depth"].Range, "Impossible depth range", "min_depth %d is greater than max_depth %d: the rule can never match.", m.minDepth, m.maxDepth)
	}
	return m, text
}

func (l *loader) peerAttr(m *peerMatcher, name string, a *hcl.Attribute) {
	switch name {
	case "spiffe_id":
		m.ids = l.globs(a, "spiffe://")
	case "delegators_allowed":
		m.delegAllowed = l.globs(a, "spiffe://")
	case "delegators_forbidden":
		m.delegForbidden = l.globs(a, "spiffe://")
	case "delegated_by":
		m.delegatedBy = l.globs(a, "spiffe://")
	case "chain_root":
		m.chainRoot = l.globs(a, "spiffe://")
	case "trust_domain":
		m.tds = l.globs(a, "")
	case "agent":
		m.agents = l.globs(a, "")
	case "task":
		m.tasks = l.globs(a, "")
	case "model":
		m.models = l.globs(a, "")
	case "principal":
		m.princs = l.globs(a, "")
	case "prompt":
		l.prompts(m, a)
	case "scopes_all":
		m.scopesAll = l.scopes(a)
	case "scopes_any":
		m.scopesAny = l.scopes(a)
	case "min_depth":
		m.minDepth = l.depth(a)
	case "max_depth":
		m.maxDepth = l.depth(a)
	case "min_deadline_remaining":
		if d, ok := l.duration(a); ok {
			m.minRemaining, m.hasMinRemaining = d, true
		}
	case "task_required":
		if l.boolean(a) {
			m.needClaims = true
		}
	}
}

var actionSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: KindHTTP}, {Type: KindGRPC}, {Type: KindMCP}, {Type: KindAuthZEN}, {Type: "generic"},
}}

var actionKindSchemas = map[string]*hcl.BodySchema{
	KindHTTP:    {Attributes: []hcl.AttributeSchema{{Name: "methods"}, {Name: "paths"}}},
	KindGRPC:    {Attributes: []hcl.AttributeSchema{{Name: "methods"}}},
	KindMCP:     {Attributes: []hcl.AttributeSchema{{Name: "tools"}, {Name: "prompts"}, {Name: "resources"}, {Name: "methods"}}},
	KindAuthZEN: {Attributes: []hcl.AttributeSchema{{Name: "names"}}},
	"generic":   {Attributes: []hcl.AttributeSchema{{Name: "kind", Required: true}, {Name: "names"}}},
}

func (l *loader) actionBlock(b *hcl.Block) *actionMatcher {
	content, diags := b.Body.Content(actionSchema)
	l.diags = append(l.diags, diags...)
	m := &actionMatcher{}
	for _, blk := range content.Blocks {
		c, diags := blk.Body.Content(actionKindSchemas[blk.Type])
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		if blk.Type == KindMCP {
			m.alts = append(m.alts, l.mcpAlts(c)...)
			continue
		}
		m.alts = append(m.alts, l.actionAlt(blk.Type, c))
	}
	if len(content.Blocks) == 0 && !diags.HasErrors() {
		l.errorf(b.DefRange, "Empty action block", "An action block needs at least one of http, grpc, mcp, authzen or generic; omit the block to match every action.")
	}
	return m
}

func (l *loader) actionAlt(kind string, c *hcl.BodyContent) actionAlt {
	alt := actionAlt{kind: kind}
	at := c.Attributes
	switch kind {
	case KindHTTP:
		if a := at["methods"]; a != nil {
			alt.methods = l.methods(a)
		}
		if a := at["paths"]; a != nil {
			alt.pats = l.pathGlobs(a)
		}
	case KindGRPC:
		if a := at["methods"]; a != nil {
			alt.pats = l.globsChecked(a, "/", CheckGRPCMethodPattern, "gRPC method")
		}
	case KindAuthZEN:
		if a := at["names"]; a != nil {
			alt.pats = l.globs(a, "")
		}
	default:
		if s, ok := l.str(at["kind"]); ok {
			alt.kind = s
			if s == KindHTTP || s == KindGRPC || s == KindMCP || s == KindAuthZEN || s == "" {
				l.errorf(at["kind"].Expr.Range(), "Invalid generic kind", "Use the %s block for %q actions; a generic kind is an application's own, non-empty kind.", s, s)
			}
		}
		if a := at["names"]; a != nil {
			alt.pats = l.globs(a, "")
		}
	}
	return alt
}

// mcpAlts decodes an mcp block: each of tools, prompts and resources is
// an alternative of its own, and so is methods; an empty block matches
// every MCP message.
func (l *loader) mcpAlts(c *hcl.BodyContent) []actionAlt {
	var out []actionAlt
	for _, sel := range []mcpSel{mcpTools, mcpPrompts, mcpResources} {
		if a := c.Attributes[mcpSelNames[sel]]; a != nil {
			pats := l.globs
			if sel == mcpResources {
				pats = func(a *hcl.Attribute, _ string) []glob { return l.resourceGlobs(a) }
			}
			out = append(out, actionAlt{kind: KindMCP, sel: sel, pats: pats(a, "")})
		}
	}
	if a := c.Attributes["methods"]; a != nil {
		items, _ := l.strs(a)
		alt := actionAlt{kind: KindMCP, methods: []string{}}
		for _, it := range items {
			if it.val == "*" {
				alt.methods = nil
				break
			}
			if it.val == "" || strings.ContainsAny(it.val, " *") {
				l.errorf(it.rng, "Invalid MCP method", "%q is not an MCP method: write it as sent, like \"tools/list\" or \"initialize\", or \"*\" for any.", it.val)
				continue
			}
			alt.methods = append(alt.methods, it.val)
		}
		out = append(out, alt)
	}
	if len(out) == 0 {
		out = append(out, actionAlt{kind: KindMCP})
	}
	return out
}

// methods decodes HTTP methods; "*" means any.
func (l *loader) methods(a *hcl.Attribute) []string {
	items, _ := l.strs(a)
	out := []string{}
	for _, it := range items {
		if it.val == "*" {
			return nil
		}
		if it.val != strings.ToUpper(it.val) || it.val == "" || strings.ContainsAny(it.val, " /*") {
			l.errorf(it.rng, "Invalid HTTP method", "%q is not an HTTP method: write it in upper case, like \"GET\", or \"*\" for any.", it.val)
			continue
		}
		out = append(out, it.val)
	}
	return out
}
