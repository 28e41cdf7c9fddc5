package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/agentid/agentid/internal/strictjson"
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
	actionType = cty.Object(map[string]cty.Type{"kind": cty.String, "method": cty.String, "path": cty.String, "name": cty.String,
		"properties": cty.DynamicPseudoType, "arguments": cty.DynamicPseudoType})
	requestType = cty.Object(map[string]cty.Type{"headers": cty.Map(cty.String), "source": cty.String, "source_port": cty.Number})
	entityType  = cty.Object(map[string]cty.Type{"type": cty.String, "id": cty.String, "properties": cty.DynamicPseudoType})
	rootNames   = []string{"peer", "action", "request", "var", "now", "subject", "resource", "context", "data"}
)

// rootSet says which condition variables the conditions of a set use, so
// that a decision builds only those.
type rootSet uint16

const (
	rootSubject rootSet = 1 << iota
	rootResource
	rootContext
	rootPeer
	rootAction
	rootRequest
)

func rootBit(name string) rootSet {
	switch name {
	case "subject":
		return rootSubject
	case "resource":
		return rootResource
	case "context":
		return rootContext
	case "peer":
		return rootPeer
	case "action":
		return rootAction
	case "request":
		return rootRequest
	}
	return 0
}

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
	l.dataBroken = false
	l.checkData(a.Expr)
	if len(l.diags) > before || l.dataBroken {
		return nil
	}
	for _, t := range a.Expr.Variables() {
		l.roots |= rootBit(t.RootName())
		if t.RootName() == "peer" {
			l.usePeerAttr(t)
		}
	}
	l.checkCost(a.Expr)
	guardNumbers(a.Expr, l.typeContext())
	linearConditionals(a.Expr)
	if readsArguments(a.Expr) {
		l.usesArgs = true
	}
	c := &condition{root: splitCond(a.Expr)}
	l.typecheck(c.root, a)
	return c
}

// usePeerAttr notes the peer attribute that t reads (peer.task,
// peer["task"]); a traversal that reads the peer whole, or by a key known
// only at decision time, needs every attribute.
func (l *loader) usePeerAttr(t hcl.Traversal) {
	if l.peerAll {
		return
	}
	name := ""
	if len(t) >= 2 {
		switch s := t[1].(type) {
		case hcl.TraverseAttr:
			name = s.Name
		case hcl.TraverseIndex:
			if s.Key.Type() == cty.String && s.Key.IsKnown() && !s.Key.IsNull() {
				name = s.Key.AsString()
			}
		}
	}
	if name == "" {
		l.peerAll, l.peerAttrs = true, nil
		return
	}
	if l.peerAttrs == nil {
		l.peerAttrs = map[string]bool{}
	}
	l.peerAttrs[name] = true
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

// typeContext has the condition variables as unknown values of their
// types (var and data as loaded): evaluating an expression in it gives its
// type.
func (l *loader) typeContext() *hcl.EvalContext {
	return &hcl.EvalContext{Functions: functions, Variables: map[string]cty.Value{
		"peer": cty.UnknownVal(peerType), "action": cty.UnknownVal(actionType),
		"request": cty.UnknownVal(requestType), "var": l.varObj, "now": cty.UnknownVal(cty.String),
		"subject": cty.UnknownVal(entityType), "resource": cty.UnknownVal(entityType),
		"context": cty.DynamicVal, "data": l.dataObj,
	}}
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
	v, diags := n.expr.Value(l.typeContext())
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

// readsArguments reports whether e may read action.arguments: through
// that attribute, or through action as a whole value or by index.
func readsArguments(e hcl.Expression) bool {
	for _, t := range e.Variables() {
		if t.RootName() != "action" {
			continue
		}
		if len(t) < 2 {
			return true
		}
		if a, ok := t[1].(hcl.TraverseAttr); !ok || a.Name == "arguments" {
			return true
		}
	}
	return false
}

// tri is a condition's value: false, true, or unknown (it depends on the
// arguments, with Input.AnyArguments).
type tri uint8

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

// eval returns the condition's value, or an error message. Unknown values
// are errors unless partial (Input.AnyArguments), where they make the
// value unknown: three-valued logic, false && unknown is false.
func (n *condNode) eval(ctx *hcl.EvalContext, partial bool) (tri, string) {
	switch n.op {
	case condAnd:
		l, err := n.l.eval(ctx, partial)
		if l == triFalse || err != "" {
			return triFalse, err
		}
		r, err := n.r.eval(ctx, partial)
		if r == triFalse || err != "" {
			return triFalse, err
		}
		return max(l, r), ""
	case condOr:
		l, err := n.l.eval(ctx, partial)
		if l == triTrue || err != "" {
			return l, err
		}
		r, err := n.r.eval(ctx, partial)
		if r == triTrue || err != "" {
			return r, err
		}
		return max(l, r), "" // false or unknown
	case condNot:
		v, err := n.l.eval(ctx, partial)
		switch v {
		case triFalse:
			v = triTrue
		case triTrue:
			v = triFalse
		}
		return v, err
	}
	v, diags := n.expr.Value(ctx)
	if diags.HasErrors() {
		explainClaimErrors(n.expr, ctx, diags)
		return triFalse, diagText(diags)
	}
	switch {
	case !v.IsKnown() && partial:
		return triUnknown, ""
	case !v.IsKnown():
		return triFalse, fmt.Sprintf("%s: condition value is unknown", n.expr.Range())
	case v.IsNull():
		return triFalse, fmt.Sprintf("%s: condition value is null", n.expr.Range())
	case v.Type() != cty.Bool:
		return triFalse, fmt.Sprintf("%s: condition value is %s, not bool", n.expr.Range(), v.Type().FriendlyName())
	}
	if v.True() {
		return triTrue, ""
	}
	return triFalse, ""
}

// explainClaimErrors rewrites HCL's "Unsupported attribute" on a claim
// of a peer that is not an agent task (peerValue leaves them out) into
// what happened and how to write it.
func explainClaimErrors(e hcl.Expression, ctx *hcl.EvalContext, diags hcl.Diagnostics) {
	p, ok := ctx.Variables["peer"]
	if !ok || !p.Type().IsObjectType() || !p.Type().HasAttribute("is_task") || p.GetAttr("is_task").True() {
		return
	}
	for _, d := range diags {
		if d.Summary != "Unsupported attribute" || d.Subject == nil {
			continue
		}
		for _, t := range e.Variables() {
			if t.RootName() != "peer" || len(t) < 2 {
				continue
			}
			if a, ok := t[1].(hcl.TraverseAttr); ok && a.SrcRange == *d.Subject {
				d.Summary = "Claim of a plain SVID"
				d.Detail = fmt.Sprintf("The peer is not an agent task (a plain SVID): it has no claim %q. Test peer.is_task first (peer.is_task && …) or read it with lookup(peer, %q, default).", a.Name, a.Name)
			}
		}
	}
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

// evalContext builds the per-decision variables of the conditions: peer,
// action, request, subject, resource and context only when a condition
// of the set uses them (HCL's Variables, at load), and the MCP arguments
// only when one reads them. It says why the arguments could not be
// decoded (then they are null, and a condition that reads them errs: fail
// closed).
func evalContext(st *evalState) (*hcl.EvalContext, string) {
	in, now := st.in, st.now
	args, argErr := cty.NullVal(cty.DynamicPseudoType), ""
	switch {
	case in.AnyArguments:
		args = cty.DynamicVal
	case st.usesArgs && st.args != nil && st.args.done:
		args, argErr = st.args.v, st.args.err
	case st.usesArgs:
		var err error
		if args, err = ArgumentsValue(in.Action.Arguments); err != nil {
			args, argErr = cty.NullVal(cty.DynamicPseudoType), "action.arguments: "+err.Error()
		}
		if st.args != nil {
			*st.args = argsMemo{done: true, v: args, err: argErr}
		}
	}
	vars := map[string]cty.Value{
		"var": st.vars, "now": cty.StringVal(now.UTC().Format(time.RFC3339)), "data": st.data,
	}
	if st.roots&rootPeer != 0 {
		vars["peer"] = peerValue(&in.Peer, now, st.peerAttrs)
	}
	if st.roots&rootAction != 0 {
		vars["action"] = actionValue(in, args)
	}
	if st.roots&rootRequest != 0 {
		vars["request"] = requestValue(&in.Request)
	}
	if st.roots&rootSubject != 0 {
		typ, id := in.subject()
		props := in.Subject.Properties
		if in.Subject.Type == "" {
			props = nil // an authenticated peer's attributes are in peer
		}
		vars["subject"] = entityValue(typ, id, props)
	}
	if st.roots&rootResource != 0 {
		vars["resource"] = entityValue(in.Resource.Type, in.Resource.ID, in.Resource.Properties)
	}
	if st.roots&rootContext != 0 {
		vars["context"] = jsonObjectValue(in.Context)
	}
	return &hcl.EvalContext{Functions: functions, Variables: vars}, argErr
}

func entityValue(typ, id string, props []byte) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{"type": cty.StringVal(typ), "id": cty.StringVal(id), "properties": jsonObjectValue(props)})
}

// jsonObjectValue is a JSON object as a cty value: an empty object for none,
// null when it cannot be read (a condition using it then errs and fails
// closed).
func jsonObjectValue(raw []byte) cty.Value {
	if len(raw) == 0 {
		return cty.EmptyObjectVal
	}
	// numbers beyond MaxNumberLen (go-cty parses them in quadratic time),
	// duplicate keys and nesting beyond MaxArgumentsDepth are refused first
	if _, _, err := strictjson.Check(raw, MaxArgumentsDepth, nil); err != nil {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	t, err := ctyjson.ImpliedType(raw)
	if err != nil {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	v, err := ctyjson.Unmarshal(raw, t)
	if err != nil {
		return cty.NullVal(cty.DynamicPseudoType)
	}
	return v
}

// peerValue is the peer variable with the attributes in attrs (all when
// attrs is nil).
func peerValue(p *Peer, now time.Time, attrs map[string]bool) cty.Value {
	want := func(name string) bool { return attrs == nil || attrs[name] }
	n := len(peerType.AttributeTypes())
	if attrs != nil {
		n = len(attrs) + 1
	}
	m := make(map[string]cty.Value, n)
	if want("id") {
		m["id"] = cty.StringVal(p.ID.String())
	}
	if want("trust_domain") {
		m["trust_domain"] = cty.StringVal(p.ID.TrustDomain().Name())
	}
	m["is_task"] = cty.BoolVal(p.Claims != nil) // always: explainClaimErrors reads it
	c := p.Claims
	if c == nil {
		// a plain SVID has no claims: reading one is an error (fail
		// closed), not a null that == and != compare without one
		return cty.ObjectVal(m)
	}
	if want("agent") {
		m["agent"] = cty.StringVal(c.Agent)
	}
	if want("task") {
		m["task"] = cty.StringVal(c.Task)
	}
	if want("model") {
		m["model"] = cty.StringVal(c.Model)
	}
	if want("prompt") {
		m["prompt"] = cty.StringVal(c.Prompt)
	}
	if want("principal") {
		m["principal"] = cty.StringVal(c.Principal)
	}
	if want("scopes") {
		m["scopes"] = strList(c.Scope)
	}
	if want("chain") {
		m["chain"] = strList(c.Chain)
	}
	if want("depth") {
		m["depth"] = cty.NumberIntVal(int64(len(c.Chain)))
	}
	if want("deadline") {
		m["deadline"] = cty.StringVal(c.Deadline.UTC().Format(time.RFC3339))
	}
	if want("deadline_remaining") {
		m["deadline_remaining"] = cty.NumberIntVal(int64(c.Deadline.Sub(now) / time.Second))
	}
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

func actionValue(in *Input, args cty.Value) cty.Value {
	a := &in.Action
	props := cty.EmptyObjectVal
	if len(in.ActionProperties) > 0 {
		props = jsonObjectValue(in.ActionProperties)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"kind": cty.StringVal(a.Kind), "method": cty.StringVal(a.Method),
		"path": cty.StringVal(a.Path), "name": cty.StringVal(a.Name), "properties": props,
		"arguments": args,
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
	for _, t := range []cty.Type{peerType, actionType, requestType, entityType, l.varObj.Type()} {
		for a := range t.AttributeTypes() {
			cands = append(cands, a)
		}
	}
	slices.Sort(cands)
	if s := didYouMean(name, cands); s != "" {
		d.Detail = strings.TrimSuffix(d.Detail, ".") + "." + s
	}
}
