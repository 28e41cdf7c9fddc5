package policies_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/agentid/agentid/policies"
)

// TestTupleToListCostsLikeALoop (review 13): a for expression over request
// data yields a tuple, and so does a JSON array in action.arguments or the
// AuthZEN context. go-cty converts a tuple passed to a list or set
// parameter (anytrue, alltrue, subset, distinct, join, …) by unifying its
// element types, in time quadratic in their number (convert.unify →
// sortTypes): 16 KiB of commas in a header cost 1.8–3.5 s per decision. Each
// condition here is compared, on the same hostile input, with a condition
// that walks the same elements without the conversion (best of 3,
// interleaved, generous ratio): before the fix the ratios were 27–96 for
// the loops and 225–670 for the arrays (seconds per decision); linear
// conversions measure 0.4–9 (under load). The rows from == on are shapes
// that were linear already and stay so.
func TestTupleToListCostsLikeALoop(t *testing.T) {
	const n = 16 << 10
	commas := input(func(in *policies.Input) {
		in.Request.Headers = map[string][]string{"X-Q": {strings.Repeat(",", n)}}
	})
	arr := func(elem string) *policies.Input {
		return input(func(in *policies.Input) {
			in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t",
				Arguments: `{"a":[` + strings.Repeat(elem+",", n-1) + elem + `]}`}
		})
	}
	bools, strs := arr("false"), arr(`""`)
	ctx := input(func(in *policies.Input) { in.Context = []byte(`{"a":[` + strings.Repeat(`"",`, n-1) + `""]}`) })
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d":""`, i)
	}
	obj := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t", Arguments: `{` + strings.Join(keys, ",") + `}`}
	})
	mixed := make([]string, n)
	for i := range mixed {
		mixed[i] = []string{`1`, `"x"`, `true`}[i%3]
	}
	nested := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t",
			Arguments: `{"a":[[` + strings.Join(mixed, ",") + `],[1,2]],"b":[` + strings.Join(mixed, ",") + `],"c":[1]}`}
	})
	var rows []string // tuples of 255 and 256 mixed elements: their list type is list(string)
	for i := 0; len(rows)*256 < n; i++ {
		rows = append(rows, `[`+strings.Join(mixed[:255+i%2], ",")+`]`)
	}
	midsize := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t",
			Arguments: `{"a":[` + strings.Join(rows, ",") + `],"b":[` + strings.Join(mixed, ",") + `]}`}
	})
	const hdr = `split(",", lookup(request.headers, "x-q", ""))`
	// the baseline walks the elements without converting them to a list
	loopBase := `length([for s in ` + hdr + ` : s == "q"]) < 0`
	for _, tt := range []struct {
		cond, base string
		in         *policies.Input
	}{
		{`anytrue([for s in ` + hdr + ` : s == "q"])`, loopBase, commas},
		{`alltrue([for s in ` + hdr + ` : s == ""])`, loopBase, commas},
		{`subset([for s in ` + hdr + ` : s], ["", "a"])`, loopBase, commas},
		{`length(distinct([for s in ` + hdr + ` : s])) == 1`, loopBase, commas},
		{`join("", [for s in ` + hdr + ` : s]) == ""`, loopBase, commas},
		{`coalesce([for s in ` + hdr + ` : s]...) == ""`, loopBase, commas},
		{`length(concat([for s in ` + hdr + ` : [s]]...)) == 0`, loopBase, commas},
		{`length(concat([for s in ` + hdr + ` : split("", s)]...)) == 0`, loopBase, commas},
		{`length(true ? [for s in ` + hdr + ` : s] : []) == 0`, loopBase, commas},
		{`length(false ? [] : [for s in ` + hdr + ` : s == ""]) == 0`, loopBase, commas},
		{`length(true ? [for s in ` + hdr + ` : s] : split(",", "a,b")) == 0`, loopBase, commas},
		{`[for s in ` + hdr + ` : s] == ` + hdr, loopBase, commas},
		{`[for s in ` + hdr + ` : s] == [for s in ` + hdr + ` : s]`, loopBase, commas},
		{`contains([for s in ` + hdr + ` : s], "q")`, loopBase, commas},
		{`element([for s in ` + hdr + ` : s], 1) == ""`, loopBase, commas},
		{`length(keys({for s in ` + hdr + ` : s => s...})) == 1`, loopBase, commas},
		{`length([for k, v in {for s in ` + hdr + ` : s => s...} : v]) == 1`, loopBase, commas},
		{`length(distinct(` + hdr + `)) == 1`, loopBase, commas},
		{`action.arguments.a == action.arguments.a`, `length(action.arguments.a) < 0`, strs},
		{`anytrue(action.arguments.a)`, `length(action.arguments.a) < 0`, bools},
		{`alltrue(action.arguments.a)`, `length(action.arguments.a) < 0`, bools},
		{`length(distinct(action.arguments.a)) == 0`, `length(action.arguments.a) < 0`, strs},
		{`length(true ? action.arguments.a : ["x"]) == 0`, `length(action.arguments.a) < 0`, strs},
		{`subset(action.arguments.a, ["x"])`, `length(action.arguments.a) < 0`, strs},
		{`join(",", action.arguments.a) == ""`, `length(action.arguments.a) < 0`, strs},
		{`length(true ? action.arguments : {}) == 0`, `length(action.arguments) < 0`, obj},
		{`length(true ? action.arguments : {a = 1}) == 0`, `length(action.arguments) < 0`, obj},
		{`length(true ? {for k, v in action.arguments : k => v} : request.headers) == 0`, `length({for k, v in action.arguments : k => v}) < 0`, obj},
		{`length(distinct(action.arguments.a)) == 0`, `length(action.arguments.b) < 0`, nested},
		{`length(coalesce(action.arguments.b, action.arguments.c)) == 0`, `length(action.arguments.b) < 0`, nested},
		{`length(true ? [action.arguments.b, action.arguments.c] : []) == 0`, `length(action.arguments.b) < 0`, nested},
		{`length(true ? {x = action.arguments.b, y = action.arguments.c} : {}) == 0`, `length(action.arguments.b) < 0`, nested},
		{`length(concat([action.arguments.b], [action.arguments.c])) == 0`, `length(action.arguments.b) < 0`, nested},
		{`length(distinct(action.arguments.a)) == 0`, `length(action.arguments.b) < 0`, midsize},
		{`length(distinct(context.a)) == 0`, `length(context.a) < 0`, ctx},
	} {
		set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(allowIf("", tt.cond))}})
		if diags.HasErrors() {
			t.Logf("%s: refused at load: %s", tt.cond, diags.Error())
			continue
		}
		base := mustLoad(t, allowIf("", tt.base))
		h, p := bestOf(3, func() { set.Decide(tt.in) }, func() { base.Decide(tt.in) })
		ratio := float64(h) / float64(max(p, time.Microsecond))
		t.Logf("%s: %v, baseline %v, ratio %.1f", tt.cond, h, p, ratio)
		if ratio > 20 {
			t.Errorf("%s costs %.0fx the loop over the same %d elements (%v vs %v): super-linear", tt.cond, ratio, n, h, p)
		}
	}
}

// TestLinearConversionsKeepHCLResults: the linear conversions give the
// results HCL and go-cty give (compared with HCL's own evaluation of the
// same expression over the same data), and an impossible one is still an
// error.
func TestLinearConversionsKeepHCLResults(t *testing.T) {
	in := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t",
			Arguments: `{"a":["x","y","x"],"m":[1,"1",true],"n":null,"o":[{"k":1},{"k":"2"}],"one":["b"],"p":{"x":1},"q":{"y":"2","z":true},"nest":[[1,"x"],[true]]}`}
	})
	args := `{a = ["x", "y", "x"], m = [1, "1", true], n = null, o = [{k = 1}, {k = "2"}], one = ["b"], p = {x = 1}, q = {y = "2", z = true}, nest = [[1, "x"], [true]]}`
	for _, cond := range []string{
		`length(true ? [for s in ["a", "b"] : s] : []) == 2`,
		`contains(false ? [] : [for s in ["a", "b"] : s], "b")`,
		`(true ? ["a"] : ["b"]) == ["a"]`,
		`contains(true ? [1, "a"] : [], "1")`,
		`length(true ? (false ? [1] : [1, 2]) : []) == 2`,
		`length(true ? [1, 2, 3] : split(",", "a")) == 3`,
		`length(false ? null : [1]) == 1`,
		`length(ARGS.n == null ? [] : ARGS.a) == 0`,
		`length(ARGS.a == null ? [] : ARGS.a) == 3`,
		`contains(true ? ARGS.m : [], "true")`,
		`length(true ? ARGS.a : []) == 3`,
		`contains(false ? [] : ARGS.a, "y")`,
		`(true ? ARGS.a : ["b"]) == ["x", "y", "x"]`,
		`(true ? ARGS.one : ["a"]) == ["b"]`,
		`(false ? ARGS.one : ["a"]) == ["a"]`,
		`length(true ? ARGS.a : split(",", "a")) == 3`,
		`lookup(false ? ARGS.p : ARGS.q, "z", "") == "true"`,
		`(true ? ARGS.p : ARGS.q)["x"] == "1"`,
		`length(true ? ARGS.p : {}) == 1`,
		`(true ? ARGS.p : {x = 2}).x == 1`,
		`length(true ? (false ? ARGS.one : ARGS.a) : []) == 3`,
		`distinct(ARGS.nest)[1][0] == "true"`,
		`distinct(ARGS.nest)[0][0] == "1"`,
		`length(true ? ARGS.nest : []) == 2`,
		`(true ? ARGS.nest : [])[0][1] == "x"`,
		`coalesce(ARGS.nest[1], ARGS.nest[0])[0] == "true"`,
		`length(concat([ARGS.nest[0]], [ARGS.nest[1]])) == 2`,
		`length(distinct(ARGS.a)) == 2`,
		`length(distinct(ARGS.m)) == 2`,
		`distinct(ARGS.o)[1].k == "2"`,
		`anytrue([for s in ARGS.a : s == "y"])`,
		`alltrue([for s in ARGS.a : s == "y"])`,
		`subset(ARGS.a, ["x", "y"])`,
		`join("-", ARGS.a, ["z"]) == "x-y-x-z"`,
		`join("", ARGS.m) == "11true"`,
		`coalesce(ARGS.m...) == "1"`,
		`length(concat(ARGS.a, ["z"])) == 4`,
		`length(concat([for s in ARGS.a : [s]]...)) == 3`,
		`length(concat(split(",", "a,b"), [1])) == 3`,
		`length(setunion(["a"], ["b", "a"])) == 2`,
		`length(true ? [{a = 1}] : [{b = 2}, {c = "3"}]) == 1`,
	} {
		want, diags := hclsyntax.ParseExpression([]byte(strings.ReplaceAll(cond, "ARGS", args)), "w.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		ctx := &hcl.EvalContext{Functions: map[string]function.Function{
			"length": stdlib.LengthFunc, "contains": stdlib.ContainsFunc, "lookup": stdlib.LookupFunc, "split": stdlib.SplitFunc,
			"distinct": stdlib.DistinctFunc, "anytrue": anytrue, "alltrue": alltrue, "subset": subsetList,
			"join": stdlib.JoinFunc, "coalesce": stdlib.CoalesceFunc, "concat": stdlib.ConcatFunc, "setunion": stdlib.SetUnionFunc,
		}}
		w, diags := want.Value(ctx)
		if diags.HasErrors() {
			t.Fatalf("%s: HCL: %s", cond, diags.Error())
		}
		set := mustLoad(t, allowIf("", strings.ReplaceAll(cond, "ARGS", "action.arguments")))
		if d := set.Decide(in); d.Allow != w.True() {
			t.Errorf("%s: allow %v, HCL says %v (%v)", cond, d.Allow, w.True(), d.Errors)
		}
	}
	for _, bad := range []string{
		`length(true ? [{a = 1}] : [[1], [2]]) == 0`,
		`anytrue(["x"])`,
	} {
		_, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(allowIf("", bad))}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "p.hcl:3,") {
			t.Errorf("%s: got %v, want an error at p.hcl:3", bad, diags)
		}
	}
	// a tuple of more element types than maxElementTypes is an error, not a
	// quadratic unification
	set := mustLoad(t, allowIf("", `length(distinct(action.arguments.o)) > 0`))
	var objs []string
	for i := range 9 {
		objs = append(objs, fmt.Sprintf(`{"k%d":1}`, i))
	}
	in.Action.Arguments = `{"o":[` + strings.Join(objs, ",") + `]}`
	if d := set.Decide(in); d.Allow || len(d.Errors) == 0 || !strings.Contains(d.Errors[0], "more than 8 different types") {
		t.Errorf("9 element types: allow %v, errors %q", d.Allow, d.Errors)
	}
}

// anytrue, alltrue and subset as go-cty would run them over lists, for
// TestLinearConversionsKeepHCLResults.
var (
	anytrue    = boolsOver(true)
	alltrue    = boolsOver(false)
	subsetList = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "a", Type: cty.List(cty.String)}, {Name: "b", Type: cty.List(cty.String)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for _, a := range args[0].AsValueSlice() {
				if !slices.ContainsFunc(args[1].AsValueSlice(), a.RawEquals) {
					return cty.False, nil
				}
			}
			return cty.True, nil
		},
	})
)

func boolsOver(want bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			for _, v := range args[0].AsValueSlice() {
				if v.True() == want {
					return cty.BoolVal(want), nil
				}
			}
			return cty.BoolVal(!want), nil
		},
	})
}
