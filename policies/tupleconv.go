package policies

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
)

// A for expression yields a tuple, and so does a JSON array in
// action.arguments, the AuthZEN context or properties. go-cty converts a
// tuple given to a list or set parameter by unifying the types of all its
// elements (convert.unify → sortTypes compares every pair), and
// coalesce(xs...) and concat(ls...) unify their arguments' types the same
// way: time quadratic in the number of elements, which the client chooses
// (16 KiB of commas split and looped over cost 1.8–3.5 s per decision,
// review 13). The functions of the condition library go through
// linearCollections, linearCoalesce and linearConcat instead, which unify
// the distinct element types only: at most maxElementTypes of them.

// maxElementTypes is how many different element types a tuple, or the
// arguments of coalesce or concat, may have to be made one list or set: a
// JSON array of strings, numbers, bools and nulls has at most four; the
// objects of an array have one type per set of attributes.
const maxElementTypes = 8

// linearCollections wraps f so that its list and set parameters take any
// value (cty.DynamicPseudoType, so that HCL does not convert a tuple
// itself) and the wrapper converts it with toCollection.
func linearCollections(f function.Function) function.Function {
	wrap := func(p function.Parameter) (function.Parameter, cty.Type) {
		if !p.Type.IsListType() && !p.Type.IsSetType() {
			return p, cty.NilType
		}
		want := p.Type
		p.Type = cty.DynamicPseudoType
		return p, want
	}
	params := f.Params()
	wants := make([]cty.Type, len(params))
	for i := range params {
		params[i], wants[i] = wrap(params[i])
	}
	var varParam *function.Parameter
	varWant := cty.NilType
	if vp := f.VarParam(); vp != nil {
		p, w := wrap(*vp)
		varParam, varWant = &p, w
	}
	convertArgs := func(args []cty.Value) ([]cty.Value, error) {
		out := make([]cty.Value, len(args))
		for i, a := range args {
			want := varWant
			if i < len(wants) {
				want = wants[i]
			}
			if want == cty.NilType {
				out[i] = a
				continue
			}
			v, err := toCollection(a, want)
			if err != nil {
				return nil, function.NewArgError(i, err)
			}
			out[i] = v
		}
		return out, nil
	}
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    varParam,
		Type: func(args []cty.Value) (cty.Type, error) {
			conv, err := convertArgs(args)
			if err != nil {
				return cty.NilType, err
			}
			return f.ReturnTypeForValues(conv)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			conv, err := convertArgs(args)
			if err != nil {
				return cty.NilVal, err
			}
			return f.Call(conv)
		},
	})
}

// convertLinear is convert.Convert(v, want) made of toCollection, toMap
// and conversions of the elements and attributes one by one where go-cty
// would unify the types of many.
func convertLinear(v cty.Value, want cty.Type) (cty.Value, error) {
	t := v.Type()
	if want == cty.DynamicPseudoType || t.Equals(want) {
		return v, nil
	}
	if !v.IsKnown() || v.IsNull() || v.IsMarked() {
		return convert.Convert(v, want)
	}
	switch {
	case (want.IsListType() || want.IsSetType()) && t.IsTupleType():
		return toCollection(v, want)
	case want.IsListType() && t.IsListType() && want.ElementType() != cty.DynamicPseudoType:
		if v.LengthInt() == 0 {
			return cty.ListValEmpty(want.ElementType()), nil
		}
		elems := make([]cty.Value, 0, v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			c, err := convertLinear(e, want.ElementType())
			if err != nil {
				return cty.NilVal, fmt.Errorf("element %d: %w", len(elems), err)
			}
			elems = append(elems, c)
		}
		if !cty.CanListVal(elems) {
			return cty.NilVal, fmt.Errorf("element types must all match for conversion to list")
		}
		return cty.ListVal(elems), nil
	case want.IsMapType() && t.IsObjectType() && want.ElementType() != cty.DynamicPseudoType:
		return toMap(v, want.ElementType())
	case want.IsObjectType() && t.IsObjectType() && sameAttributes(t, want):
		attrs := make(map[string]cty.Value, len(want.AttributeTypes()))
		for name, at := range want.AttributeTypes() {
			c, err := convertLinear(v.GetAttr(name), at)
			if err != nil {
				return cty.NilVal, fmt.Errorf("attribute %q: %w", name, err)
			}
			attrs[name] = c
		}
		return cty.ObjectVal(attrs), nil
	case want.IsTupleType() && t.IsTupleType() && len(want.TupleElementTypes()) == v.LengthInt():
		etys := want.TupleElementTypes()
		elems := make([]cty.Value, 0, len(etys))
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			c, err := convertLinear(e, etys[len(elems)])
			if err != nil {
				return cty.NilVal, fmt.Errorf("element %d: %w", len(elems), err)
			}
			elems = append(elems, c)
		}
		return cty.TupleVal(elems), nil
	}
	return convert.Convert(v, want)
}

// toCollection converts v to want, a list or set type, as convert.Convert
// does but in time linear in the elements of a tuple.
func toCollection(v cty.Value, want cty.Type) (cty.Value, error) {
	if !v.Type().IsTupleType() || !v.IsKnown() || v.IsNull() || v.IsMarked() {
		return convertLinear(v, want)
	}
	ety := want.ElementType()
	elems := make([]cty.Value, 0, v.LengthInt())
	var etys []cty.Type // the distinct element types, in order
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if ety != cty.DynamicPseudoType && !e.Type().Equals(ety) {
			c, err := convertLinear(e, ety)
			if err != nil {
				return cty.NilVal, fmt.Errorf("element %d: %w", len(elems), err)
			}
			e = c
		}
		var err error
		if etys, err = addType(etys, e.Type()); err != nil {
			return cty.NilVal, err
		}
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		if want.IsSetType() {
			return cty.SetValEmpty(ety), nil
		}
		return cty.ListValEmpty(ety), nil
	}
	if len(etys) > 1 {
		u, err := unifyTypes(etys)
		if err != nil {
			return cty.NilVal, err
		}
		for i, e := range elems {
			if !e.Type().Equals(u) {
				if elems[i], err = convertLinear(e, u); err != nil {
					return cty.NilVal, fmt.Errorf("element %d: %w", i, err)
				}
			}
		}
	}
	if want.IsSetType() {
		if !cty.CanSetVal(elems) {
			return cty.NilVal, fmt.Errorf("element types must all match for conversion to set")
		}
		return cty.SetVal(elems), nil
	}
	if !cty.CanListVal(elems) {
		return cty.NilVal, fmt.Errorf("element types must all match for conversion to list")
	}
	return cty.ListVal(elems), nil
}

// addType adds t to the distinct types etys, which may hold
// maxElementTypes.
func addType(etys []cty.Type, t cty.Type) ([]cty.Type, error) {
	for _, e := range etys {
		if e.Equals(t) {
			return etys, nil
		}
	}
	if len(etys) == maxElementTypes {
		return nil, fmt.Errorf("the elements have more than %d different types", maxElementTypes)
	}
	return append(etys, t), nil
}

// maxUnifySize bounds the types given to convert.UnifyUnsafe, in type
// nodes (typeSize) all together: go-cty unifies nested tuples and objects
// by unifying all their element types, in time quadratic in their number,
// so [[1, "x", true, …], [1]] would cost as much as the flat tuple did.
const maxUnifySize = 512

// typeSize is the number of nodes of t (a primitive is 1), counted up to
// limit.
func typeSize(t cty.Type, limit int) int {
	n := 1
	switch {
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		n += typeSize(t.ElementType(), limit-n)
	case t.IsTupleType():
		for _, e := range t.TupleElementTypes() {
			if n > limit {
				break
			}
			n += typeSize(e, limit-n)
		}
	case t.IsObjectType():
		for _, a := range t.AttributeTypes() {
			if n > limit {
				break
			}
			n += typeSize(a, limit-n)
		}
	}
	return n
}

// unify is convert.UnifyUnsafe of distinct types of at most maxUnifySize
// nodes; cty.NilType with an error when they are bigger.
func unify(etys []cty.Type) (cty.Type, error) {
	size := 0
	for _, t := range etys {
		if size += typeSize(t, maxUnifySize-size); size > maxUnifySize {
			return cty.NilType, fmt.Errorf("the values' types are too large to unify (more than %d nested element and attribute types)", maxUnifySize)
		}
	}
	u, _ := convert.UnifyUnsafe(etys)
	return u, nil
}

// unifyTypes is unify with an error when there is no common type.
func unifyTypes(etys []cty.Type) (cty.Type, error) {
	u, err := unify(etys)
	if err != nil {
		return cty.NilType, err
	}
	if u == cty.NilType {
		return cty.NilType, fmt.Errorf("all elements must have the same type (or types that convert to one)")
	}
	return u, nil
}

// linearCoalesce is go-cty's coalesce with its argument types unified
// distinct ones only: coalesce(xs...) has one argument per element of xs.
var linearCoalesce = function.New(&function.Spec{
	Description: `Returns the first of the given arguments that isn't null, or raises an error if there are no non-null arguments.`,
	VarParam: &function.Parameter{
		Name: "vals", Type: cty.DynamicPseudoType,
		AllowUnknown: true, AllowDynamicType: true, AllowNull: true,
	},
	Type: func(args []cty.Value) (cty.Type, error) {
		var etys []cty.Type
		for _, a := range args {
			var err error
			if etys, err = addType(etys, a.Type()); err != nil {
				return cty.NilType, fmt.Errorf("all arguments must have the same type: %w", err)
			}
		}
		if len(etys) == 0 {
			return cty.NilType, fmt.Errorf("no arguments")
		}
		if len(etys) == 1 {
			return etys[0], nil
		}
		u, err := unify(etys)
		if err != nil {
			return cty.NilType, err
		}
		if u == cty.NilType {
			return cty.NilType, fmt.Errorf("all arguments must have the same type")
		}
		return u, nil
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		for _, a := range args {
			if !a.IsKnown() {
				return cty.UnknownVal(retType), nil
			}
			if a.IsNull() {
				continue
			}
			return convertLinear(a, retType)
		}
		return cty.NilVal, fmt.Errorf("no non-null arguments")
	},
})

// linearConcat is go-cty's concat with the types of its list arguments
// unified distinct ones only: concat(ls...) has one argument per element
// of ls.
var linearConcat = function.New(&function.Spec{
	Description: `Concatenates together all of the given lists or tuples into a single sequence, preserving the input order.`,
	VarParam:    &function.Parameter{Name: "seqs", Type: cty.DynamicPseudoType},
	Type: func(args []cty.Value) (cty.Type, error) {
		if len(args) == 0 {
			return cty.NilType, fmt.Errorf("at least one argument is required")
		}
		lists := true
		var ltys []cty.Type
		for _, a := range args {
			if !a.Type().IsListType() {
				lists = false
				break
			}
			var err error
			if ltys, err = addType(ltys, a.Type()); err != nil {
				lists = false
				break
			}
		}
		if lists {
			u, err := unify(ltys)
			if err != nil {
				return cty.NilType, err
			}
			if u != cty.NilType && u.IsListType() {
				return u, nil
			}
		}
		etys := make([]cty.Type, 0, len(args))
		for i, a := range args {
			switch t := a.Type(); {
			case t.IsTupleType():
				etys = append(etys, t.TupleElementTypes()...)
			case t.IsListType():
				if !a.IsKnown() {
					return cty.DynamicPseudoType, nil
				}
				for range a.LengthInt() {
					etys = append(etys, t.ElementType())
				}
			default:
				return cty.NilType, function.NewArgErrorf(i, "all arguments must be lists or tuples; got %s", t.FriendlyName())
			}
		}
		return cty.Tuple(etys), nil
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		var vals []cty.Value
		for i, seq := range args {
			if retType.IsListType() {
				var err error
				if seq, err = convertLinear(seq, retType); err != nil {
					return cty.NilVal, function.NewArgError(i, err)
				}
			}
			for it := seq.ElementIterator(); it.Next(); {
				_, v := it.Element()
				vals = append(vals, v)
			}
		}
		switch {
		case retType.IsTupleType():
			return cty.TupleVal(vals), nil
		case len(vals) == 0:
			return cty.ListValEmpty(retType.ElementType()), nil
		}
		return cty.ListVal(vals), nil
	},
})

// condResultName is the function that evaluates a conditional expression
// (c ? t : f) of a condition: not an HCL identifier, so a policy cannot
// call it.
const condResultName = "conditional result"

// linearConditionals rewrites each conditional expression c ? t : f of e
// in place as true ? "conditional result"(c, t, f) : null. HCL unifies
// the types of t and f itself, and for a tuple against a tuple of another
// length or a list it unifies the types of all their elements, in time
// quadratic in their number, and for objects of different attributes, or
// an object and a map, all their attribute types; condResult gives HCL
// the same results made lists or maps in linear time first (listArms,
// mapArms). Conditionals whose results are constants are left to HCL.
func linearConditionals(e hcl.Expression) {
	x, ok := e.(hclsyntax.Expression)
	if !ok {
		return
	}
	hclsyntax.VisitAll(x, func(n hclsyntax.Node) hcl.Diagnostics {
		c, ok := n.(*hclsyntax.ConditionalExpr)
		if !ok {
			return nil
		}
		if call, ok := c.TrueResult.(*hclsyntax.FunctionCallExpr); ok && call.Name == condResultName {
			return nil
		}
		if len(hclsyntax.Variables(c.TrueResult)) == 0 && len(hclsyntax.Variables(c.FalseResult)) == 0 {
			return nil // constants of the policy: HCL's own errors
		}
		r := c.SrcRange
		call := &hclsyntax.FunctionCallExpr{Name: condResultName,
			Args:      []hclsyntax.Expression{c.Condition, c.TrueResult, c.FalseResult},
			NameRange: r, OpenParenRange: r, CloseParenRange: r}
		c.Condition = &hclsyntax.LiteralValueExpr{Val: cty.True, SrcRange: c.Condition.Range()}
		c.TrueResult = call
		c.FalseResult = &hclsyntax.LiteralValueExpr{Val: cty.NullVal(cty.DynamicPseudoType), SrcRange: c.FalseResult.Range()}
		return nil
	})
}

var condResult = function.New(&function.Spec{
	Params: []function.Parameter{
		{Name: "condition", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
		{Name: "true result", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
		{Name: "false result", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true},
	},
	Type: func(args []cty.Value) (cty.Type, error) {
		v, err := conditional(args)
		if err != nil {
			return cty.NilType, err
		}
		return v.Type(), nil
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) { return conditional(args) },
})

// conditional is HCL's c ? t : f of the values args, with the results
// made lists in linear time where HCL would unify their elements.
func conditional(args []cty.Value) (cty.Value, error) {
	t, f, err := listArms(args[1], args[2])
	if err != nil {
		return cty.NilVal, err
	}
	lit := func(v cty.Value) hclsyntax.Expression { return &hclsyntax.LiteralValueExpr{Val: v} }
	v, diags := (&hclsyntax.ConditionalExpr{Condition: lit(args[0]), TrueResult: lit(t), FalseResult: lit(f)}).Value(nil)
	if diags.HasErrors() {
		d := diags[0]
		return cty.NilVal, fmt.Errorf("%s: %s", d.Summary, d.Detail)
	}
	return v, nil
}

// listArms converts t and f to one list type when HCL would (a tuple and
// a tuple of another length, or a tuple and a list), unifying their
// distinct element types.
func listArms(t, f cty.Value) (cty.Value, cty.Value, error) {
	tt, ft := t.Type(), f.Type()
	seq := func(ty cty.Type) bool { return ty.IsTupleType() || ty.IsListType() }
	switch {
	case !t.IsKnown() || !f.IsKnown() || t.IsNull() || f.IsNull() || t.IsMarked() || f.IsMarked():
		return t, f, nil
	case tt.IsObjectType() && (ft.IsObjectType() || ft.IsMapType()) || tt.IsMapType() && ft.IsObjectType():
		return mapArms(t, f)
	case !seq(tt) || !seq(ft) || tt.IsListType() && ft.IsListType():
		return t, f, nil
	case tt.IsTupleType() && ft.IsTupleType() && t.LengthInt() == f.LengthInt():
		return t, f, nil
	}
	var etys []cty.Type
	for _, v := range []cty.Value{t, f} {
		if v.Type().IsListType() {
			var err error
			if etys, err = addType(etys, v.Type().ElementType()); err != nil {
				return t, f, err
			}
			continue
		}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			var err error
			if etys, err = addType(etys, e.Type()); err != nil {
				return t, f, fmt.Errorf("the true and false results: %w", err)
			}
		}
	}
	u, err := unifyTypes(etys)
	if err != nil {
		return t, f, fmt.Errorf("inconsistent conditional result types: %w", err)
	}
	if t, err = toCollection(t, cty.List(u)); err != nil {
		return t, f, err
	}
	f, err = toCollection(f, cty.List(u))
	return t, f, err
}

// mapArms converts t and f to one map type when HCL would (objects of
// different attributes, or an object and a map), unifying their distinct
// attribute types.
func mapArms(t, f cty.Value) (cty.Value, cty.Value, error) {
	tt, ft := t.Type(), f.Type()
	if tt.IsObjectType() && ft.IsObjectType() && sameAttributes(tt, ft) {
		return t, f, nil
	}
	var etys []cty.Type
	for _, ty := range []cty.Type{tt, ft} {
		if ty.IsMapType() {
			var err error
			if etys, err = addType(etys, ty.ElementType()); err != nil {
				return t, f, err
			}
			continue
		}
		for _, at := range ty.AttributeTypes() {
			var err error
			if etys, err = addType(etys, at); err != nil {
				return t, f, fmt.Errorf("the true and false results: %w", err)
			}
		}
	}
	if len(etys) == 0 {
		return t, f, nil // two empty objects
	}
	u, err := unifyTypes(etys)
	if err != nil {
		return t, f, fmt.Errorf("inconsistent conditional result types: %w", err)
	}
	if t, err = toMap(t, u); err != nil {
		return t, f, err
	}
	f, err = toMap(f, u)
	return t, f, err
}

func sameAttributes(a, b cty.Type) bool {
	aa, ba := a.AttributeTypes(), b.AttributeTypes()
	if len(aa) != len(ba) {
		return false
	}
	for name := range aa {
		if _, ok := ba[name]; !ok {
			return false
		}
	}
	return true
}

// toMap converts the known object or map v to a map of ety, one
// attribute at a time.
func toMap(v cty.Value, ety cty.Type) (cty.Value, error) {
	if v.Type().IsMapType() {
		return convertLinear(v, cty.Map(ety))
	}
	m := make(map[string]cty.Value, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if !e.Type().Equals(ety) {
			var err error
			if e, err = convertLinear(e, ety); err != nil {
				return cty.NilVal, fmt.Errorf("attribute %q: %w", k.AsString(), err)
			}
		}
		m[k.AsString()] = e
	}
	if len(m) == 0 {
		return cty.MapValEmpty(ety), nil
	}
	var first cty.Type
	for _, e := range m {
		if first == cty.NilType {
			first = e.Type()
		} else if !e.Type().Equals(first) {
			return cty.NilVal, fmt.Errorf("attribute types must all match for conversion to map")
		}
	}
	return cty.MapVal(m), nil
}
