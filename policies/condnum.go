package policies

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"

	"github.com/agentid/agentid/internal/strictjson"
)

// HCL converts a string to a number where an expression wants one
// (request.headers["x-amount"] < 1000), with go-cty's parser, whose cost is
// quadratic in the digits: a 1 MiB header took 2.5 s. The loader puts
// every operand that such a conversion may meet behind numberGuard, which
// refuses (a condition error: fail closed) a string that begins like a
// number and that strictjson.CheckNumber refuses — longer than
// MaxNumberLen characters, or with an exponent beyond ±400 — before HCL
// parses it. The conversions are those of:
//   - the arithmetic and comparison operators, and unary minus;
//   - a function argument whose parameter type holds a number (min, max,
//     abs, element's index), and lookup's default (converted to the
//     map's element type);
//   - an index key (a list's or tuple's index is a number).
//
// Elsewhere HCL unifies a string with a number into a string, which costs
// nothing of the kind. An operand without variables (a literal of the
// policy), or whose type holds no string (peer.depth, request.source_port,
// arithmetic results: evaluated with unknown values at load), is left as
// written, so that the common numeric conditions do not pay for the guard.

// numberGuardName is the guard's function name: not an HCL identifier, so
// no policy can call it.
const numberGuardName = "number operand"

var numberGuard = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "operand", Type: cty.DynamicPseudoType,
		AllowNull: true, AllowUnknown: true, AllowDynamicType: true, AllowMarked: true}},
	Type: func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if err := checkNumberStrings(args[0]); err != nil {
			return cty.NilVal, function.NewArgError(0, err)
		}
		return args[0], nil
	},
})

// checkNumberStrings checks v's strings, one level deep (an expanded
// list of strings meets number parameters element by element).
func checkNumberStrings(v cty.Value) error {
	if !v.IsKnown() || v.IsNull() {
		return nil
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return checkNumberString(v.AsString())
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		for it := v.ElementIterator(); it.Next(); {
			if _, e := it.Element(); e.Type() == cty.String && e.IsKnown() && !e.IsNull() {
				if err := checkNumberString(e.AsString()); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkNumberString refuses s when go-cty's parser would read it as a
// number at more than linear cost: it begins like one (after a sign, a
// digit or ".") and strictjson.CheckNumber refuses it. Other strings fail
// to convert at their first character, or are not numbers at all (a map
// key).
func checkNumberString(s string) error {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	if i == len(s) || s[i] != '.' && (s[i] < '0' || s[i] > '9') {
		return nil
	}
	if err := strictjson.CheckNumber(s); err != nil {
		return errors.New("a string used as a number: " + err.Error())
	}
	return nil
}

// guardNumbers puts numberGuard in front of the operands of e that HCL
// may convert from a string to a number.
func guardNumbers(e hcl.Expression, types *hcl.EvalContext) {
	x, ok := e.(hclsyntax.Expression)
	if !ok {
		return
	}
	hclsyntax.VisitAll(x, func(n hclsyntax.Node) hcl.Diagnostics {
		switch x := n.(type) {
		case *hclsyntax.BinaryOpExpr:
			switch x.Op {
			case hclsyntax.OpAdd, hclsyntax.OpSubtract, hclsyntax.OpMultiply, hclsyntax.OpDivide, hclsyntax.OpModulo,
				hclsyntax.OpGreaterThan, hclsyntax.OpGreaterThanOrEqual, hclsyntax.OpLessThan, hclsyntax.OpLessThanOrEqual:
				x.LHS, x.RHS = guard(x.LHS, types), guard(x.RHS, types)
			}
		case *hclsyntax.UnaryOpExpr:
			if x.Op == hclsyntax.OpNegate {
				x.Val = guard(x.Val, types)
			}
		case *hclsyntax.IndexExpr:
			x.Key = guard(x.Key, types)
		case *hclsyntax.FunctionCallExpr:
			f, ok := functions[x.Name]
			if !ok {
				return nil
			}
			params, varParam := f.Params(), f.VarParam()
			for i := range x.Args {
				var p *function.Parameter
				switch {
				case i < len(params):
					p = &params[i]
				case varParam != nil:
					p = varParam
				}
				if p != nil && hasNumber(p.Type) || x.Name == "lookup" && i == 2 ||
					x.ExpandFinal && i == len(x.Args)-1 && restHasNumber(params[min(i, len(params)):], varParam) {
					x.Args[i] = guard(x.Args[i], types)
				}
			}
		}
		return nil
	})
}

// restHasNumber reports whether a parameter of params or varParam holds
// numbers: the elements of an expanded final argument meet them.
func restHasNumber(params []function.Parameter, varParam *function.Parameter) bool {
	for _, p := range params {
		if hasNumber(p.Type) {
			return true
		}
	}
	return varParam != nil && hasNumber(varParam.Type)
}

// mayHoldString reports whether a value of type t may be or hold a
// string (DynamicPseudoType: any value, e.g. action.arguments.x).
func mayHoldString(t cty.Type) bool {
	switch {
	case t == cty.String || t == cty.DynamicPseudoType:
		return true
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		return mayHoldString(t.ElementType())
	case t.IsTupleType():
		for _, et := range t.TupleElementTypes() {
			if mayHoldString(et) {
				return true
			}
		}
	case t.IsObjectType():
		for _, at := range t.AttributeTypes() {
			if mayHoldString(at) {
				return true
			}
		}
	}
	return false
}

// hasNumber reports whether values of type t hold numbers.
func hasNumber(t cty.Type) bool {
	switch {
	case t == cty.Number:
		return true
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		return hasNumber(t.ElementType())
	}
	return false
}

// guard wraps e in numberGuard, unless it is a constant of the policy or
// its type (in types, the loader's context of unknown values) holds no
// string.
func guard(e hclsyntax.Expression, types *hcl.EvalContext) hclsyntax.Expression {
	if len(hclsyntax.Variables(e)) == 0 {
		return e
	}
	if v, diags := e.Value(types); !diags.HasErrors() && !mayHoldString(v.Type()) {
		return e
	}
	if c, ok := e.(*hclsyntax.FunctionCallExpr); ok && c.Name == numberGuardName {
		return e
	}
	r := e.Range()
	return &hclsyntax.FunctionCallExpr{Name: numberGuardName, Args: []hclsyntax.Expression{e},
		NameRange: r, OpenParenRange: r, CloseParenRange: r}
}
