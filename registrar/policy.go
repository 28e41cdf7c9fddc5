package registrar

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// DefaultMaxTTL is an agent's max_ttl when its policy block sets none.
const DefaultMaxTTL = time.Hour

// DefaultMaxDelegated is an agent's max_delegated when its policy block
// sets none: a bound on what one task can make SPIRE hold (and every
// registrar's liveness lister read), not a working limit — set the
// agent's own.
const DefaultMaxDelegated = 1000

// Policy is a parsed issuance policy: who may start which agent with which
// model, prompt, scopes, principal and TTL, and who may delegate to it. A
// Policy is immutable; it is safe for concurrent use.
type Policy struct {
	rules    map[string]AgentRule
	fallback *AgentRule // the "*" block
}

// AgentRule is one `agent "<name>" { … }` block.
type AgentRule struct {
	// Agent is the block label: an agent name, or "*" for the block that
	// applies to agents without a block of their own.
	Agent string
	// Pos is where the block starts, "file:line" (the file's base name).
	Pos string
	// Models, Prompts, Scopes, Principals and Delegators are patterns in
	// which '*' matches any run of characters.
	Models, Prompts, Scopes, Principals, Delegators []string
	// MaxTTL bounds the time from creation to the task's deadline.
	MaxTTL time.Duration
	// MaxDepth bounds the depth of any chain the agent takes part in.
	MaxDepth int
	// MaxDelegated bounds the live tasks below a task of the agent, at
	// any depth (every ancestor's bound applies to a new child).
	MaxDelegated int
}

// Rule returns the rule for an agent: its own block, else the "*" block.
func (p *Policy) Rule(agent string) (AgentRule, bool) {
	if r, ok := p.rules[agent]; ok {
		return r, true
	}
	if p.fallback != nil {
		return *p.fallback, true
	}
	return AgentRule{}, false
}

// Policy returns p itself, so that a *Policy is a [PolicySource].
func (p *Policy) Policy() *Policy { return p }

// ParseError is a policy that does not load. Diagnostics carry source
// ranges (hcl.NewDiagnosticTextWriter prints them with context); Error
// lists them one per line as "file:line:col: summary; detail".
type ParseError struct {
	Diagnostics hcl.Diagnostics
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("registrar: issuance policy:")
	for _, d := range e.Diagnostics {
		if d.Severity != hcl.DiagError {
			continue
		}
		b.WriteString("\n  ")
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s:%d:%d: ", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString("; " + d.Detail)
		}
	}
	return b.String()
}

// LoadPolicy reads and parses an issuance policy file. It is all or
// nothing: any error diagnostic fails the load with a *[ParseError].
func LoadPolicy(path string) (*Policy, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, wrapErr("issuance policy", err)
	}
	return ParsePolicy(src, path)
}

// ParsePolicy parses an issuance policy; filename names it in diagnostics
// and rule positions.
func ParsePolicy(src []byte, filename string) (*Policy, error) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, &ParseError{diags}
	}
	content, diags := file.Body.Content(&hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{{Type: "agent", LabelNames: []string{"name"}}},
	})
	p := &Policy{rules: make(map[string]AgentRule)}
	seen := make(map[string]*hcl.Block)
	for _, block := range content.Blocks {
		rule, d := decodeAgent(block)
		diags = append(diags, d...)
		if prev, dup := seen[rule.Agent]; dup {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate agent block",
				Detail:   fmt.Sprintf("Agent %q was already defined at %s.", rule.Agent, pos(prev.DefRange)),
				Subject:  block.LabelRanges[0].Ptr(),
			})
			continue
		}
		seen[rule.Agent] = block
		if rule.Agent == "*" {
			p.fallback = &rule
		} else {
			p.rules[rule.Agent] = rule
		}
	}
	if diags.HasErrors() {
		return nil, &ParseError{diags}
	}
	return p, nil
}

// pos is "file:line" with the file's base name only: refusals carry it to
// the delegating agents, which need the rule, not the server's file layout.
func pos(r hcl.Range) string { return fmt.Sprintf("%s:%d", filepath.Base(r.Filename), r.Start.Line) }

// agentBody is the raw block; attributes are decoded one by one so that
// each diagnostic points at the value at fault.
type agentBody struct {
	Models     *hcl.Attribute `hcl:"models"`
	Prompts    *hcl.Attribute `hcl:"prompts"`
	Scopes     *hcl.Attribute `hcl:"scopes"`
	Principals *hcl.Attribute `hcl:"principals"`
	Delegators *hcl.Attribute `hcl:"delegators,optional"`
	MaxTTL     *hcl.Attribute `hcl:"max_ttl,optional"`
	MaxDepth   *hcl.Attribute `hcl:"max_depth,optional"`
	MaxDeleg   *hcl.Attribute `hcl:"max_delegated,optional"`
}

func decodeAgent(block *hcl.Block) (AgentRule, hcl.Diagnostics) {
	rule := AgentRule{Agent: block.Labels[0], Pos: pos(block.DefRange), MaxTTL: DefaultMaxTTL, MaxDepth: svid.MaxChain, MaxDelegated: DefaultMaxDelegated}
	var diags hcl.Diagnostics
	if rule.Agent != "*" && !svid.ValidName(rule.Agent) {
		diags = append(diags, diag(block.LabelRanges[0], "Invalid agent name",
			fmt.Sprintf("%q is not an agent name ([A-Za-z0-9._-]{1,128}) or \"*\".", rule.Agent)))
	}
	var b agentBody
	if d := gohcl.DecodeBody(block.Body, nil, &b); d.HasErrors() {
		return rule, append(diags, d...)
	}
	for _, req := range []struct {
		name string
		attr *hcl.Attribute
	}{{"models", b.Models}, {"prompts", b.Prompts}, {"scopes", b.Scopes}, {"principals", b.Principals}} {
		if req.attr == nil {
			diags = append(diags, diag(block.DefRange, "Missing required argument",
				fmt.Sprintf("The argument %q is required (use [\"*\"] to allow any, [] to allow none).", req.name)))
		}
	}
	rule.Models, diags = patterns(b.Models, validModelPattern, "a model pattern ([A-Za-z0-9._:/@+*-])", diags)
	rule.Prompts, diags = patterns(b.Prompts, validPromptPattern, `"sha256:<64 lower-case hex>" or "*"`, diags)
	rule.Scopes, diags = patterns(b.Scopes, svid.ValidScopeToken, "a scope token pattern", diags)
	rule.Principals, diags = patterns(b.Principals, validPrincipalPattern, "a principal URI pattern", diags)
	rule.Delegators, diags = patterns(b.Delegators, validAgentPattern, "an agent name pattern ([A-Za-z0-9._*-])", diags)
	rule.MaxTTL, diags = maxTTL(b.MaxTTL, rule.MaxTTL, diags)
	rule.MaxDepth, diags = maxDepth(b.MaxDepth, rule.MaxDepth, diags)
	rule.MaxDelegated, diags = maxDelegated(b.MaxDeleg, rule.MaxDelegated, diags)
	return rule, diags
}

func diag(r hcl.Range, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: r.Ptr()}
}

func patterns(attr *hcl.Attribute, valid func(string) bool, what string, diags hcl.Diagnostics) ([]string, hcl.Diagnostics) {
	if attr == nil {
		return nil, diags
	}
	var list []string
	if d := gohcl.DecodeExpression(attr.Expr, nil, &list); d.HasErrors() {
		return nil, append(diags, d...)
	}
	for i, p := range list {
		if !valid(p) {
			diags = append(diags, diag(elemRange(attr.Expr, i), "Invalid "+attr.Name+" entry",
				fmt.Sprintf("%q is not %s.", p, what)))
		}
	}
	return list, diags
}

// elemRange is the range of the i-th element of a list literal, or of the
// whole expression.
func elemRange(expr hcl.Expression, i int) hcl.Range {
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
		return t.Exprs[i].Range()
	}
	return expr.Range()
}

func maxTTL(attr *hcl.Attribute, def time.Duration, diags hcl.Diagnostics) (time.Duration, hcl.Diagnostics) {
	if attr == nil {
		return def, diags
	}
	var s string
	if d := gohcl.DecodeExpression(attr.Expr, nil, &s); d.HasErrors() {
		return def, append(diags, d...)
	}
	ttl, err := time.ParseDuration(s)
	if err != nil || ttl <= 0 {
		return def, append(diags, diag(attr.Expr.Range(), "Invalid max_ttl",
			fmt.Sprintf("%q is not a positive duration such as \"30m\" or \"2h\".", s)))
	}
	return ttl, diags
}

func maxDepth(attr *hcl.Attribute, def int, diags hcl.Diagnostics) (int, hcl.Diagnostics) {
	if attr == nil {
		return def, diags
	}
	var n int
	if d := gohcl.DecodeExpression(attr.Expr, nil, &n); d.HasErrors() {
		return def, append(diags, d...)
	}
	if n < 0 || n > svid.MaxChain {
		return def, append(diags, diag(attr.Expr.Range(), "Invalid max_depth",
			fmt.Sprintf("%d is not within 0..%d.", n, svid.MaxChain)))
	}
	return n, diags
}

func maxDelegated(attr *hcl.Attribute, def int, diags hcl.Diagnostics) (int, hcl.Diagnostics) {
	if attr == nil {
		return def, diags
	}
	var n int
	if d := gohcl.DecodeExpression(attr.Expr, nil, &n); d.HasErrors() {
		return def, append(diags, d...)
	}
	if n < 0 {
		return def, append(diags, diag(attr.Expr.Range(), "Invalid max_delegated",
			fmt.Sprintf("%d is negative: the number of live tasks a task of this agent may have below it (0: it may not delegate).", n)))
	}
	return n, diags
}

func validModelPattern(s string) bool {
	return s == "*" || svid.ValidModel(strings.ReplaceAll(s, "*", "x"))
}

func validAgentPattern(s string) bool {
	return s == "*" || svid.ValidName(strings.ReplaceAll(s, "*", "x"))
}

func validPromptPattern(s string) bool { return s == "*" || svid.ValidPromptDigest(s) }

func validPrincipalPattern(s string) bool {
	return s == "*" || svid.ValidPrincipal(strings.ReplaceAll(s, "*", "x"))
}
