package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// condition is a compiled condition expression: top-level && and || are
// split so that they short-circuit (hclsyntax evaluates both operands).
type condition struct {
	root *condNode
}

type condOp uint8

const (
	condLeaf condOp = iota
	condAnd
	condOr
	condNot
)

type condNode struct {
	op   condOp
	l, r *condNode
	expr hcl.Expression
}

// Variables and attributes a condition may use.
var (
	peerType = cty.Object(map[string]cty.Type{
		"id": cty.String, "trust_domain": cty.String, "is_task": cty.Bool,
		"agent": cty.String, "task": cty.String, "model": cty.String, "prompt": cty.String,
		"scopes": cty.List(cty.String), "principal": cty.String, "chain": cty.List(cty.String),
		"depth": cty.Number, "deadline": cty.String, "deadline_remaining": cty.Number,
	})
	actionType  = cty.Object(map[string]cty.Type{"kind": cty.String, "method": cty.String, "path": cty.String, "name": cty.String})
	requestType = cty.Object(map[string]cty.Type{"headers": cty.Map(cty.String), "source": cty.String, "source_port": cty.Number})
	rootNames   = []string{"peer", "action", "request", "var", "now"}
)

func (l *loader) condition(a *hcl.Attribute) *condition {
	l.markVars(a.Expr)
	before := len(l.diags)
	for _, t := range a.Expr.Variables() {
		root := t.RootName()
		if !contains(rootNames, root) {
			rng := t.SourceRange()
			l.errorf(rng, "Unknown variable", "There is no variable named %q: a condition can use %s.%s", root, strings.Join(rootNames, ", "), didYouMean(root, rootNames))
		}
	}
	if len(l.diags) > before {
		return nil
	}
	l.checkCost(a.Expr)
	c := &condition{root: splitCond(a.Expr)}
	l.typecheck(c.root, a)
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func splitCond(e hcl.Expression) *condNode {
	switch x := e.(type) {
	case *hclsyntax.ParenthesesExpr:
		return splitCond(x.Expression)
	case *hclsyntax.BinaryOpExpr:
		switch x.Op {
		case hclsyntax.OpLogicalAnd:
			return &condNode{op: condAnd, l: splitCond(x.LHS), r: splitCond(x.RHS)}
		case hclsyntax.OpLogicalOr:
			return &condNode{op: condOr, l: splitCond(x.LHS), r: splitCond(x.RHS)}
		}
	case *hclsyntax.UnaryOpExpr:
		if x.Op == hclsyntax.OpLogicalNot {
			return &condNode{op: condNot, l: splitCond(x.Val)}
		}
	}
	return &condNode{expr: e}
}

// typecheck evaluates every leaf with unknown request values of the right
// types: unknown attributes, functions and type errors surface at load.
func (l *loader) typecheck(n *condNode, a *hcl.Attribute) {
	if n.op != condLeaf {
		l.typecheck(n.l, a)
		if n.r != nil {
			l.typecheck(n.r, a)
		}
		return
	}
	ctx := &hcl.EvalContext{Functions: functions, Variables: map[string]cty.Value{
		"peer": cty.UnknownVal(peerType), "action": cty.UnknownVal(actionType),
		"request": cty.UnknownVal(requestType), "var": l.varObj, "now": cty.UnknownVal(cty.String),
	}}
	v, diags := n.expr.Value(ctx)
	for _, d := range diags {
		l.suggestAttr(d)
	}
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	if t := v.Type(); t != cty.Bool && t != cty.DynamicPseudoType {
		l.errorf(n.expr.Range(), "Condition is not a boolean", "This part of the condition is %s; a condition must be true or false.", t.FriendlyName())
	}
}

// eval returns the condition's value, or an error message.
func (n *condNode) eval(ctx *hcl.EvalContext) (bool, string) {
	switch n.op {
	case condAnd:
		if ok, err := n.l.eval(ctx); !ok || err != "" {
			return false, err
		}
		return n.r.eval(ctx)
	case condOr:
		if ok, err := n.l.eval(ctx); ok || err != "" {
			return ok, err
		}
		return n.r.eval(ctx)
	case condNot:
		ok, err := n.l.eval(ctx)
		return !ok, err
	}
	v, diags := n.expr.Value(ctx)
	if diags.HasErrors() {
		return false, diagText(diags)
	}
	switch {
	case !v.IsKnown():
		return false, fmt.Sprintf("%s: condition value is unknown", n.expr.Range())
	case v.IsNull():
		return false, fmt.Sprintf("%s: condition value is null", n.expr.Range())
	case v.Type() != cty.Bool:
		return false, fmt.Sprintf("%s: condition value is %s, not bool", n.expr.Range(), v.Type().FriendlyName())
	}
	return v.True(), ""
}

func diagText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		s := d.Summary
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		if d.Subject != nil {
			s = d.Subject.String() + ": " + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// evalContext builds the per-decision variables of the conditions.
func evalContext(in *Input, now time.Time, vars cty.Value) *hcl.EvalContext {
	return &hcl.EvalContext{Functions: functions, Variables: map[string]cty.Value{
		"peer": peerValue(&in.Peer, now), "action": actionValue(&in.Action),
		"request": requestValue(&in.Request), "var": vars, "now": cty.StringVal(now.UTC().Format(time.RFC3339)),
	}}
}

func peerValue(p *Peer, now time.Time) cty.Value {
	m := map[string]cty.Value{
		"id": cty.StringVal(p.ID.String()), "trust_domain": cty.StringVal(p.ID.TrustDomain().Name()),
		"is_task": cty.BoolVal(p.Claims != nil),
	}
	c := p.Claims
	if c == nil {
		for name, t := range peerType.AttributeTypes() {
			if _, set := m[name]; !set {
				m[name] = cty.NullVal(t)
			}
		}
		return cty.ObjectVal(m)
	}
	m["agent"], m["task"], m["model"] = cty.StringVal(c.Agent), cty.StringVal(c.Task), cty.StringVal(c.Model)
	m["prompt"], m["principal"] = cty.StringVal(c.Prompt), cty.StringVal(c.Principal)
	m["scopes"], m["chain"] = strList(c.Scope), strList(c.Chain)
	m["depth"] = cty.NumberIntVal(int64(len(c.Chain)))
	m["deadline"] = cty.StringVal(c.Deadline.UTC().Format(time.RFC3339))
	m["deadline_remaining"] = cty.NumberIntVal(int64(c.Deadline.Sub(now) / time.Second))
	return cty.ObjectVal(m)
}

func strList(ss []string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

func actionValue(a *Action) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"kind": cty.StringVal(a.Kind), "method": cty.StringVal(a.Method),
		"path": cty.StringVal(a.Path), "name": cty.StringVal(a.Name),
	})
}

func requestValue(r *Request) cty.Value {
	h := cty.MapValEmpty(cty.String)
	if len(r.Headers) > 0 {
		m := make(map[string]cty.Value, len(r.Headers))
		for k, v := range r.Headers {
			m[strings.ToLower(k)] = cty.StringVal(strings.Join(v, ","))
		}
		h = cty.MapVal(m)
	} else if len(r.HeaderMap) > 0 {
		m := make(map[string]cty.Value, len(r.HeaderMap))
		for k, v := range r.HeaderMap {
			m[strings.ToLower(k)] = cty.StringVal(v)
		}
		h = cty.MapVal(m)
	}
	src, port := cty.StringVal(""), cty.NumberIntVal(0)
	if r.Source.IsValid() {
		src, port = cty.StringVal(r.Source.Addr().Unmap().String()), cty.NumberIntVal(int64(r.Source.Port()))
	}
	return cty.ObjectVal(map[string]cty.Value{"headers": h, "source": src, "source_port": port})
}

// suggestAttr adds "Did you mean" to HCL's unsupported-attribute errors on
// the condition objects, whose values are unknown at load.
func (l *loader) suggestAttr(d *hcl.Diagnostic) {
	const marker = `does not have an attribute named "`
	i := strings.Index(d.Detail, marker)
	if d.Summary != "Unsupported attribute" || i < 0 || strings.Contains(d.Detail, "Did you mean") {
		return
	}
	name, _, _ := strings.Cut(d.Detail[i+len(marker):], `"`)
	var cands []string
	for _, t := range []cty.Type{peerType, actionType, requestType, l.varObj.Type()} {
		for a := range t.AttributeTypes() {
			cands = append(cands, a)
		}
	}
	slices.Sort(cands)
	if s := didYouMean(name, cands); s != "" {
		d.Detail = strings.TrimSuffix(d.Detail, ".") + "." + s
	}
}
