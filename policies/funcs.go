package policies

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"

	"github.com/agentid/agentid/internal/strictjson"
)

// functions is the condition function library (docs/policy.md lists it).
// It is read-only and shared by every evaluation.
var functions = map[string]function.Function{
	// agentid functions
	"glob":          globFunc,
	"matches":       matchesFunc,
	"subset":        linearCollections(subsetFunc),
	"has_scope":     hasScopeFunc,
	"duration":      durationFunc,
	"unix":          unixFunc,
	"hour":          hourFunc,
	"weekday":       weekdayFunc,
	"before":        beforeFunc,
	"cidr_contains": cidrContainsFunc,
	"startswith":    startsWithFunc,
	"endswith":      endsWithFunc,
	"anytrue":       linearCollections(anyTrueFunc),
	"alltrue":       linearCollections(allTrueFunc),
	// from go-cty's standard library
	"contains":   stdlib.ContainsFunc,
	"length":     stdlib.LengthFunc,
	"lower":      stdlib.LowerFunc,
	"upper":      stdlib.UpperFunc,
	"lookup":     stdlib.LookupFunc,
	"keys":       stdlib.KeysFunc,
	"coalesce":   linearCoalesce,
	"concat":     linearConcat,
	"distinct":   linearCollections(distinctFunc),
	"element":    stdlib.ElementFunc,
	"join":       linearCollections(stdlib.JoinFunc),
	"split":      stdlib.SplitFunc,
	"regex":      stdlib.RegexFunc,
	"regexall":   stdlib.RegexAllFunc,
	"can":        tryfunc.CanFunc,
	"replace":    stdlib.ReplaceFunc,
	"setunion":   linearCollections(stdlib.SetUnionFunc),
	"timeadd":    stdlib.TimeAddFunc,
	"formatdate": stdlib.FormatDateFunc,
	"min":        stdlib.MinFunc,
	"max":        stdlib.MaxFunc,
	"abs":        stdlib.AbsoluteFunc,
	// the loader's guard of string to number conversions (condnum.go)
	numberGuardName: numberGuard,
	// c ? t : f of a condition (tupleconv.go)
	condResultName: condResult,
}

func strParam(name string) function.Parameter {
	return function.Parameter{Name: name, Type: cty.String}
}

func boolFunc(params []function.Parameter, f func(args []cty.Value) (bool, error)) function.Function {
	return function.New(&function.Spec{Params: params, Type: function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for _, a := range args {
				if !a.IsWhollyKnown() {
					return cty.UnknownVal(cty.Bool), nil
				}
			}
			ok, err := f(args)
			return cty.BoolVal(ok), err
		}})
}

var globFunc = boolFunc([]function.Parameter{strParam("pattern"), strParam("s")}, func(args []cty.Value) (bool, error) {
	g, err := cachedGlob(args[0].AsString())
	if err != nil {
		return false, function.NewArgError(0, err)
	}
	return g.match(args[1].AsString()), nil
})

// condGlobs caches the compiled patterns of glob(). The loader only
// accepts patterns from the policy (see checkCost), so the cache holds no
// more than the policies loaded hold.
var condGlobs sync.Map // pattern → globResult

type globResult struct {
	g   *glob
	err error
}

// matchesFunc is regex's test without its result shapes: true when s
// contains a match of the RE2 pattern, which comes from the policy and is
// compiled once (regex and regexall compile on every call).
var matchesFunc = boolFunc([]function.Parameter{strParam("pattern"), strParam("s")}, func(args []cty.Value) (bool, error) {
	p := args[0].AsString()
	r, ok := condRegexps.Load(p)
	if !ok {
		re, err := regexp.Compile(p)
		if err != nil {
			return false, function.NewArgError(0, err)
		}
		r, _ = condRegexps.LoadOrStore(p, re)
	}
	return r.(*regexp.Regexp).MatchString(args[1].AsString()), nil
})

// condRegexps caches matches' patterns; they come from policies (the
// loader refuses a pattern derived from the request), so the set is bounded.
var condRegexps sync.Map

func cachedGlob(p string) (*glob, error) {
	if r, ok := condGlobs.Load(p); ok {
		return r.(globResult).g, r.(globResult).err
	}
	g, err := compileGlob(p)
	condGlobs.Store(p, globResult{&g, err})
	return &g, err
}

// subsetFunc takes lists (a set argument converts to one): go-cty sets
// hash with CRC-32, which request data can make collide.
var subsetFunc = boolFunc([]function.Parameter{
	{Name: "a", Type: cty.List(cty.String)}, {Name: "b", Type: cty.List(cty.String)},
}, func(args []cty.Value) (bool, error) {
	b := make(map[string]struct{}, args[1].LengthInt())
	for it := args[1].ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			return false, function.NewArgErrorf(1, "the list holds a null value")
		}
		b[v.AsString()] = struct{}{}
	}
	for it := args[0].ElementIterator(); it.Next(); {
		_, v := it.Element()
		if v.IsNull() {
			return false, function.NewArgErrorf(0, "the list holds a null value")
		}
		if _, ok := b[v.AsString()]; !ok {
			return false, nil
		}
	}
	return true, nil
})

// distinctFunc is go-cty's distinct in linear time (go-cty compares every
// element with every kept one): elements are told apart by distinctKey.
var distinctFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "list", Type: cty.List(cty.DynamicPseudoType)}},
	Type:   func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		list := args[0]
		if !list.IsWhollyKnown() {
			return cty.UnknownVal(retType), nil
		}
		seen := map[string]struct{}{}
		var out []cty.Value
		for it := list.ElementIterator(); it.Next(); {
			_, v := it.Element()
			key, err := distinctKey(v)
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			if _, dup := seen[key]; !dup {
				seen[key] = struct{}{}
				out = append(out, v)
			}
		}
		if len(out) == 0 {
			return cty.ListValEmpty(retType.ElementType()), nil
		}
		return cty.ListVal(out), nil
	},
})

var hasScopeFunc = boolFunc([]function.Parameter{{Name: "peer", Type: cty.DynamicPseudoType}, strParam("scope")}, func(args []cty.Value) (bool, error) {
	p := args[0]
	if p.Type().IsObjectType() && p.Type().HasAttribute("is_task") && !p.Type().HasAttribute("scopes") {
		return false, function.NewArgErrorf(0, "the peer is not an agent task: it has no scopes")
	}
	if !p.Type().IsObjectType() || !p.Type().HasAttribute("scopes") {
		return false, function.NewArgErrorf(0, "has_scope wants the peer object, e.g. has_scope(peer, %q)", args[1].AsString())
	}
	scopes := p.GetAttr("scopes")
	if scopes.IsNull() {
		return false, function.NewArgErrorf(0, "the peer is not an agent task: it has no scopes")
	}
	for it := scopes.ElementIterator(); it.Next(); {
		if _, v := it.Element(); v.AsString() == args[1].AsString() {
			return true, nil
		}
	}
	return false, nil
})

var durationFunc = function.New(&function.Spec{
	Params: []function.Parameter{strParam("d")}, Type: function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		d, err := parseDuration(args[0].AsString())
		if err != nil {
			return cty.NilVal, function.NewArgError(0, err)
		}
		return cty.NumberFloatVal(d.Seconds()), nil
	},
})

func parseTime(v cty.Value) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, v.AsString())
	if err != nil {
		return t, fmt.Errorf("%s is not an RFC 3339 time", strictjson.Quote(v.AsString()))
	}
	return t, nil
}

func timeFunc(ret cty.Type, f func(t time.Time) cty.Value) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{strParam("time")}, Type: function.StaticReturnType(ret),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			t, err := parseTime(args[0])
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			return f(t), nil
		},
	})
}

var (
	unixFunc    = timeFunc(cty.Number, func(t time.Time) cty.Value { return cty.NumberIntVal(t.Unix()) })
	hourFunc    = timeFunc(cty.Number, func(t time.Time) cty.Value { return cty.NumberIntVal(int64(t.UTC().Hour())) })
	weekdayFunc = timeFunc(cty.String, func(t time.Time) cty.Value { return cty.StringVal(t.UTC().Weekday().String()) })
)

var beforeFunc = boolFunc([]function.Parameter{strParam("a"), strParam("b")}, func(args []cty.Value) (bool, error) {
	a, err := parseTime(args[0])
	if err != nil {
		return false, function.NewArgError(0, err)
	}
	b, err := parseTime(args[1])
	if err != nil {
		return false, function.NewArgError(1, err)
	}
	return a.Before(b), nil
})

var cidrContainsFunc = boolFunc([]function.Parameter{strParam("cidr"), strParam("ip")}, func(args []cty.Value) (bool, error) {
	p, err := netip.ParsePrefix(args[0].AsString())
	if err != nil {
		return false, function.NewArgError(0, err)
	}
	a, err := netip.ParseAddr(args[1].AsString())
	if err != nil {
		return false, function.NewArgError(1, err)
	}
	return p.Contains(a.Unmap()), nil
})

var (
	startsWithFunc = boolFunc([]function.Parameter{strParam("s"), strParam("prefix")}, func(args []cty.Value) (bool, error) {
		return strings.HasPrefix(args[0].AsString(), args[1].AsString()), nil
	})
	endsWithFunc = boolFunc([]function.Parameter{strParam("s"), strParam("suffix")}, func(args []cty.Value) (bool, error) {
		return strings.HasSuffix(args[0].AsString(), args[1].AsString()), nil
	})
)

func boolsFunc(want bool) function.Function {
	return boolFunc([]function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}}, func(args []cty.Value) (bool, error) {
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			if v.IsNull() {
				return false, function.NewArgErrorf(0, "the list holds a null value")
			}
			if v.True() == want {
				return want, nil
			}
		}
		return !want, nil
	})
}

var (
	anyTrueFunc = boolsFunc(true)
	allTrueFunc = boolsFunc(false)
)

// distinctKey tells list elements apart: a string by its text, anything
// else by its JSON (the elements of a list have one type).
func distinctKey(v cty.Value) (string, error) {
	if v.Type() == cty.String && !v.IsNull() {
		return "s" + v.AsString(), nil
	}
	b, err := ctyjson.Marshal(v, v.Type())
	return "j" + string(b), err
}
