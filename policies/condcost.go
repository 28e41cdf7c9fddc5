package policies

import (
	"maps"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// A condition must cost time linear in the request: the agent chooses
// action.path, action.name and request.headers (up to the input limits,
// see MaxPathLen), so the loader refuses the expressions whose cost would
// grow faster than that:
//   - a pattern, regular expression, separator or replacement built from
//     request data (glob, regex, join, replace): a pattern from the request
//     costs its length times the input's, and join or replace with a
//     request-chosen separator or replacement builds a string of quadratic
//     size;
//   - setunion over action or request data: go-cty hashes set elements
//     with CRC-32, which a client can make collide;
//   - regexall over anything but the policy's own strings: Go's FindAll
//     restarts after each match and may rescan the rest of the input each
//     time, quadratic in it (the peer's 8 KiB of claims included);
//   - a for expression over action or request data whose body uses action
//     or request data again (other than through its own iteration
//     variables): nested loops over the request.
//
// The peer's attributes are bounded by SVID validation (svid.MaxJSONSize)
// and now is fixed-size: they may be used anywhere but in a pattern.
//
// Tuples (for expressions, JSON arrays) are not refused: the functions
// that take lists or sets, coalesce, concat and conditional expressions
// convert them in linear time instead of go-cty's unification, which is
// quadratic in the elements (tupleconv.go).

// taint is what a value may be derived from.
type taint uint8

const (
	taintBounded taint = 1 << iota // peer, now
	taintRequest                   // action, request
)

// policyArgs are the arguments, by position, that must come from the
// policy: literals, var.* and values derived from them only.
var policyArgs = map[string][]int{
	"glob":    {0},
	"matches": {0},
	"regex":   {0},
	"replace": {1, 2},
	"join":    {0},
}

var policyArgNames = map[string][]string{
	"glob": {"pattern"}, "matches": {"pattern"}, "regex": {"pattern"}, "replace": {"substring", "replacement"}, "join": {"separator"},
}

const (
	whyPattern = "patterns are compiled from the policy; one chosen by the client would cost its length times the input's"
	whyBuild   = "one chosen by the client could build a string of quadratic size"
)

var policyArgWhy = map[string]string{"glob": whyPattern, "matches": whyPattern, "regex": whyPattern, "replace": whyBuild, "join": whyBuild}

// costWalker checks a condition expression; frames follow hclsyntax.Walk.
type costWalker struct {
	l      *loader
	frames []costFrame
}

type costFrame struct {
	node  hclsyntax.Node
	scope map[string]taint // the iteration variables in scope
	coll  taint            // a ForExpr's collection
}

func (l *loader) checkCost(e hcl.Expression) {
	x, ok := e.(hclsyntax.Expression)
	if !ok {
		return
	}
	w := &costWalker{l: l}
	hclsyntax.Walk(x, w)
}

func (w *costWalker) Enter(n hclsyntax.Node) hcl.Diagnostics {
	f := costFrame{node: n}
	if len(w.frames) > 0 {
		parent := w.frames[len(w.frames)-1]
		f.scope = parent.scope
		if fe, ok := parent.node.(*hclsyntax.ForExpr); ok {
			if _, ok := n.(hclsyntax.ChildScope); ok {
				f.scope = maps.Clone(f.scope)
				if f.scope == nil {
					f.scope = map[string]taint{}
				}
				for _, v := range []string{fe.KeyVar, fe.ValVar} {
					if v != "" {
						f.scope[v] = parent.coll
					}
				}
			}
		}
	}
	switch x := n.(type) {
	case *hclsyntax.ForExpr:
		f.coll = taintOf(x.CollExpr, f.scope)
		if f.coll&taintRequest != 0 {
			w.forBody(x, f.scope)
		}
	case *hclsyntax.FunctionCallExpr:
		w.call(x, f.scope)
	}
	w.frames = append(w.frames, f)
	return nil
}

func (w *costWalker) Exit(hclsyntax.Node) hcl.Diagnostics {
	w.frames = w.frames[:len(w.frames)-1]
	return nil
}

// forBody refuses request data in the body of a for expression over
// request data, other than the expression's own iteration variables.
func (w *costWalker) forBody(x *hclsyntax.ForExpr, scope map[string]taint) {
	for _, body := range []hclsyntax.Expression{x.KeyExpr, x.ValExpr, x.CondExpr} {
		if body == nil {
			continue
		}
		for _, t := range hclsyntax.Variables(body) {
			root := t.RootName()
			if root == x.KeyVar || root == x.ValVar || lookupTaint(scope, root)&taintRequest == 0 {
				continue
			}
			w.l.errorf(t.SourceRange(), "Quadratic condition",
				"This for expression iterates over request data, and its body uses request data again (%s): its cost would grow with the square of the request. In the body, use the iteration variables, var and peer only.", traversalText(t))
			return
		}
	}
}

// call refuses request data in the arguments that must come from the
// policy, and in setunion.
func (w *costWalker) call(x *hclsyntax.FunctionCallExpr, scope map[string]taint) {
	if x.Name == "glob" && len(x.Args) == 2 && !x.ExpandFinal && isActionPath(x.Args[1]) {
		w.l.condPathPattern(x.Args[0])
	}
	if x.Name == "regexall" {
		if arg := argAt(x, 1); arg != nil && taintOf(arg, scope) != 0 {
			w.l.errorf(arg.Range(), "Quadratic condition",
				"regexall over action, request or peer data costs time quadratic in its length (Go's FindAll scans the rest of the input again after each match: 16 KiB took 3 s). Use matches(re, s) to test for a match or regex(re, s) for the first one, which are linear; regexall is for strings of the policy (literals, var, data).")
		}
	}
	if x.Name == "setunion" {
		for _, a := range x.Args {
			if taintOf(a, scope)&taintRequest != 0 {
				w.l.errorf(a.Range(), "Set of request data",
					"setunion over action or request data can be made quadratic (set elements are hashed with CRC-32); use contains or subset, which are linear.")
				return
			}
		}
		return
	}
	for i, pos := range policyArgs[x.Name] {
		arg := argAt(x, pos)
		if arg == nil {
			continue
		}
		if t := taintOf(arg, scope); t != 0 {
			what := "the request"
			if t&taintRequest == 0 {
				what = "the peer or the time"
			}
			w.l.errorf(arg.Range(), "Argument from the request",
				"The %s of %s must come from the policy (literals, var and values derived from them), not from %s: %s.", policyArgNames[x.Name][i], x.Name, what, policyArgWhy[x.Name])
		}
	}
}

// argAt is the expression that gives argument pos, the expanded final
// argument when the call ends in "...".
func argAt(x *hclsyntax.FunctionCallExpr, pos int) hclsyntax.Expression {
	switch {
	case pos < len(x.Args)-1 || pos < len(x.Args) && !x.ExpandFinal:
		return x.Args[pos]
	case x.ExpandFinal && len(x.Args) > 0:
		return x.Args[len(x.Args)-1]
	}
	return nil
}

func taintOf(e hclsyntax.Expression, scope map[string]taint) taint {
	var t taint
	for _, tr := range hclsyntax.Variables(e) {
		t |= lookupTaint(scope, tr.RootName())
	}
	return t
}

func lookupTaint(scope map[string]taint, name string) taint {
	if t, ok := scope[name]; ok {
		return t
	}
	switch name {
	case "action", "request", "subject", "resource", "context":
		return taintRequest
	case "peer", "now":
		return taintBounded
	}
	return 0
}

func traversalText(t hcl.Traversal) string {
	var b strings.Builder
	b.WriteString(t.RootName())
	for _, s := range t[1:] {
		if a, ok := s.(hcl.TraverseAttr); ok {
			b.WriteString("." + a.Name)
		} else {
			b.WriteString("[…]")
		}
	}
	return b.String()
}

// isActionPath reports whether e is action.path.
func isActionPath(e hclsyntax.Expression) bool {
	t, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok || len(t.Traversal) != 2 || t.Traversal.RootName() != "action" {
		return false
	}
	a, ok := t.Traversal[1].(hcl.TraverseAttr)
	return ok && a.Name == "path"
}

// condPathPattern warns about a literal glob() pattern over action.path
// that is not in canonical form (CheckPathPattern): it never matches an
// HTTP path the verifier decides. A warning, not an error: action.path
// is also a gRPC method, which is not a URL path.
func (l *loader) condPathPattern(e hclsyntax.Expression) {
	if len(hclsyntax.Variables(e)) != 0 {
		return
	}
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
		return
	}
	p := v.AsString()
	if p == "**" {
		return
	}
	if err := notCanonical(p, true); err != nil {
		l.warnf(e.Range(), "Non-canonical path pattern", "The pattern %q of glob(…, action.path) %v; as written it never matches an HTTP path, which the verifier decides in canonical form (docs/policy.md#what-the-path-is).", p, err)
	}
}
