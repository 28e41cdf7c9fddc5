package policies_test

import (
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/policies"
)

// TestTupleToListCostsLikeALoop (review 13): a for expression over request
// data yields a tuple, and so does a JSON array in action.arguments or the
// AuthZEN context. go-cty converts a tuple passed to a list or set
// parameter (anytrue, alltrue, subset, distinct, join, …) by unifying its
// element types, in time quadratic in their number (convert.unify →
// sortTypes): 16 KiB of commas in a header cost 1.8–3.5 s per decision. Each
// condition here is compared, on the same hostile input, with a condition
// that walks the same elements without the conversion (best of 5,
// interleaved, generous ratio): before the fix the ratios were 27–96 for
// the loops and 225–670 for the arrays (seconds per decision); linear
// conversions measure 0.7–5.
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
		{`anytrue(action.arguments.a)`, `length(action.arguments.a) < 0`, bools},
		{`alltrue(action.arguments.a)`, `length(action.arguments.a) < 0`, bools},
		{`length(distinct(action.arguments.a)) == 0`, `length(action.arguments.a) < 0`, strs},
		{`subset(action.arguments.a, ["x"])`, `length(action.arguments.a) < 0`, strs},
		{`join(",", action.arguments.a) == ""`, `length(action.arguments.a) < 0`, strs},
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
		if ratio > 12 {
			t.Errorf("%s costs %.0fx the loop over the same %d elements (%v vs %v): super-linear", tt.cond, ratio, n, h, p)
		}
	}
}
