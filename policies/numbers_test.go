package policies_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/policies"
)

// A number is parsed in time quadratic in its digits (big.Int.SetString,
// cty.ParseNumberVal): numbers that the client sends — in MCP arguments,
// AuthZEN properties and context, or as a string a condition compares
// with a number — are refused beyond policies.MaxNumberLen characters
// before anything parses them (issue 10, review 12 F1).

// longNumber is a number literal of n characters: digits, or a fraction
// ("0.777…") when frac.
func longNumber(n int, frac bool) string {
	if frac {
		return "0." + strings.Repeat("7", n-2)
	}
	return strings.Repeat("7", n)
}

func TestArgumentsLongNumberRefused(t *testing.T) {
	bound := policies.MaxNumberLen
	for _, tt := range []struct {
		name, args string
		ok         bool
	}{
		{"fraction at the bound", `{"n":` + longNumber(bound, true) + `}`, true},
		{"fraction over the bound", `{"n":` + longNumber(bound+1, true) + `}`, false},
		{"integer over the bound", `{"n":` + longNumber(bound+1, false) + `}`, false},
		{"1 MiB integer", `{"n":` + longNumber(policies.MaxArgumentsLen-16, false) + `}`, false},
		{"1 MiB fraction, nested", `{"a":[{"n":` + longNumber(policies.MaxArgumentsLen-32, true) + `}]}`, false},
		{"exponent beyond float64", `{"n":1e999999999}`, false},
		{"tiny exponent", `{"n":1e-999999999}`, false},
		{"float64 range", `{"n":1.5e308,"m":-2e-308,"k":0.5}`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkErr := policies.CheckArguments(tt.args)
			_, valErr := policies.ArgumentsValue(tt.args)
			if tt.ok {
				if checkErr != nil || valErr != nil {
					t.Errorf("refused: %v / %v", checkErr, valErr)
				}
				return
			}
			if checkErr == nil || valErr == nil {
				t.Fatalf("accepted: CheckArguments %v, ArgumentsValue %v", checkErr, valErr)
			}
			if len(checkErr.Error()) > 512 {
				t.Errorf("the error quotes %d bytes of the input", len(checkErr.Error()))
			}
			if !strings.Contains(checkErr.Error(), "number") {
				t.Errorf("error %q does not say what is refused", checkErr)
			}
		})
	}
}

// TestConditionNumberConversionBounded: a request string that a condition
// converts to a number (a comparison, arithmetic, a number parameter, an
// index) is a condition error beyond MaxNumberLen: the allow rule does
// not match, the deny rule does.
func TestConditionNumberConversionBounded(t *testing.T) {
	// an index must be whole: "000…01"
	whole := func(n int) string { return strings.Repeat("0", n-1) + "1" }
	frac := func(n int) string { return longNumber(n, true) }
	header := func(v string) func(*policies.Input) {
		return func(in *policies.Input) { in.Request.Headers = map[string][]string{"X-Amount": {v}} }
	}
	args := func(v string) func(*policies.Input) {
		return func(in *policies.Input) {
			b, _ := json.Marshal(map[string]string{"n": v})
			in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t", Arguments: string(b)}
		}
	}
	for _, tt := range []struct {
		name, cond string
		mod        func(string) func(*policies.Input)
		num        func(int) string
	}{
		{"header <", `request.headers["x-amount"] < 1000`, header, frac},
		{"header >=", `1000 >= lookup(request.headers, "x-amount", "0")`, header, frac},
		{"header +", `request.headers["x-amount"] + 1 > 0`, header, frac},
		{"header -x", `-request.headers["x-amount"] < 0`, header, frac},
		{"header min", `min(request.headers["x-amount"], 5) < 5`, header, frac},
		{"header min expanded", `min(split(",", request.headers["x-amount"])...) < 5`, header, frac},
		{"header element", `element(["a", "b"], request.headers["x-amount"]) != ""`, header, whole},
		{"header index", `["a", "b"][request.headers["x-amount"]] != ""`, header, whole},
		{"argument string <", `action.arguments.n < 10`, args, frac},
		{"argument string abs", `abs(action.arguments.n) < 10`, args, frac},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allow := mustLoad(t, allowIf("", tt.cond))
			deny := mustLoad(t, `rule "all" { effect = "allow" }
rule "d" {
  effect    = "deny"
  condition = `+tt.cond+`
}
`)
			long, ok := tt.num(64<<10), tt.num(policies.MaxNumberLen)
			if d := allow.Decide(input(tt.mod(ok))); !d.Allow {
				t.Fatalf("%d-character number: denied %s %v", len(ok), d.Reason, d.Errors)
			}
			var d policies.Decision
			d = allow.Decide(input(tt.mod(long)))
			if d.Allow || len(d.Errors) == 0 || !strings.Contains(strings.Join(d.Errors, " "), "number") {
				t.Errorf("64 KiB number: allow %v, errors %v", d.Allow, d.Errors)
			}
			if n := len(strings.Join(d.Errors, " ")); n > 2048 {
				t.Errorf("the errors quote %d bytes", n)
			}
			d = deny.Decide(input(tt.mod(long)))
			if d.Allow {
				t.Errorf("deny rule: allowed by %v", d.RuleNames())
			}
		})
	}
}

// TestAuthZENNumbersBounded: the numbers of AuthZEN context and
// properties (raw JSON that conditions read) are bounded too: a condition
// over a longer one errs and fails closed.
func TestAuthZENNumbersBounded(t *testing.T) {
	long := []byte(`{"n":` + longNumber(1<<20, true) + `}`)
	short := []byte(`{"n":` + longNumber(policies.MaxNumberLen, true) + `}`)
	for _, tt := range []struct {
		cond string
		mod  func(*policies.Input, []byte)
	}{
		{`context.n < 10`, func(in *policies.Input, b []byte) { in.Context = b }},
		{`resource.properties.n < 10`, func(in *policies.Input, b []byte) {
			in.Resource = policies.Entity{Type: "doc", ID: "1", Properties: b}
		}},
		{`action.properties.n < 10`, func(in *policies.Input, b []byte) { in.ActionProperties = b }},
	} {
		set := mustLoad(t, allowIf("", tt.cond))
		if d := set.Decide(input(func(in *policies.Input) { tt.mod(in, short) })); !d.Allow {
			t.Errorf("%s, %d-character number: denied %s %v", tt.cond, policies.MaxNumberLen, d.Reason, d.Errors)
		}
		var d policies.Decision
		d = set.Decide(input(func(in *policies.Input) { tt.mod(in, long) }))
		if d.Allow {
			t.Errorf("%s, 1 MiB number: allowed", tt.cond)
		}
	}
}

// TestHostileNumbersCostLikeStrings compares, in one run, the cost of a
// decision on a long number with the cost of one on a string of the same
// length (both read once by a linear scan): the best of 5 interleaved runs
// of each, so that a loaded machine slows both alike. Before the bound a
// 1 MiB number cost 2.9 s in CheckArguments against ~1 ms for the string
// (ratio ~3000); a linear decision is about 1. The threshold of 20 leaves
// two orders of magnitude on either side: noise on shared cores does not
// reach it, a quadratic parse exceeds it by far.
func TestHostileNumbersCostLikeStrings(t *testing.T) {
	const n = policies.MaxArgumentsLen - 16
	argSet := mustLoad(t, allowIf("", `action.arguments.n < 10`))
	hdrSet := mustLoad(t, allowIf("", `request.headers["x-amount"] < 1000`))
	ctxSet := mustLoad(t, allowIf("", `context.n < 10`))
	mcp := func(a string) *policies.Input {
		return input(func(in *policies.Input) {
			in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t", Arguments: a}
		})
	}
	// the plain strings start with "x": a condition does not convert them
	numArgs, strArgs := `{"n":`+longNumber(n-6, false)+`}`, `{"n":"x`+longNumber(n-9, false)+`"}`
	hdr := func(v string) *policies.Input {
		return input(func(in *policies.Input) { in.Request.Headers = map[string][]string{"X-Amount": {v}} })
	}
	ctx := func(b string) *policies.Input { return input(func(in *policies.Input) { in.Context = []byte(b) }) }
	const hn = 64 << 10 // the verifier's header bound
	for _, tt := range []struct {
		name           string
		hostile, plain func()
	}{
		{"CheckArguments", func() { _ = policies.CheckArguments(numArgs) }, func() { _ = policies.CheckArguments(strArgs) }},
		{"condition on an argument", func() { argSet.Decide(mcp(`{"n":"` + longNumber(n-8, true) + `"}`)) }, func() { argSet.Decide(mcp(strArgs)) }},
		{"condition on a header", func() { hdrSet.Decide(hdr(longNumber(hn, true))) }, func() { hdrSet.Decide(hdr("x" + longNumber(hn-1, false))) }},
		{"condition on the context", func() { ctxSet.Decide(ctx(numArgs)) }, func() { ctxSet.Decide(ctx(strArgs)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, p := bestOf(5, tt.hostile, tt.plain)
			ratio := float64(h) / float64(max(p, time.Microsecond))
			t.Logf("number %v, string %v, ratio %.1f", h, p, ratio)
			if ratio > 20 {
				t.Errorf("a long number costs %.0fx a string of the same length (%v vs %v): super-linear", ratio, h, p)
			}
		})
	}
}

// bestOf runs a and b n times, interleaved, and returns the shortest time
// of each.
func bestOf(n int, a, b func()) (ta, tb time.Duration) {
	ta, tb = time.Hour, time.Hour
	for range n {
		s := time.Now()
		a()
		ta = min(ta, time.Since(s))
		s = time.Now()
		b()
		tb = min(tb, time.Since(s))
	}
	return ta, tb
}

// TestMissingScopesDecodesArgumentsOnce: MissingScopes re-decides the
// action once per allow rule that names scopes the peer lacks; the
// arguments (up to 1 MiB) are decoded once for all of them, so asking
// costs about one decoding (ArgumentsValue), not one per rule. Compared in
// one run (best of 5, interleaved): with 40 such rules and 1 MiB of
// arguments, decoding per rule made the ratio ~40; it is ~1.
func TestMissingScopesDecodesArgumentsOnce(t *testing.T) {
	var src strings.Builder
	for i := range 40 {
		fmt.Fprintf(&src, `rule "w%d" {
  effect = "allow"
  peer { scopes_all = ["fs:write%d"] }
  action {
    mcp { tools = ["write_file"] }
  }
  condition = action.arguments.path == "/srv/none"
}
`, i, i)
	}
	set := mustLoad(t, src.String())
	in := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "write_file",
			Arguments: `{"path":"/srv/x","pad":"` + strings.Repeat("p", policies.MaxArgumentsLen-40) + `"}`}
	})
	if got := set.MissingScopes(in); got != nil {
		t.Fatalf("MissingScopes = %q, want none (the condition is false)", got)
	}
	ms, d := bestOf(5, func() { set.MissingScopes(in) }, func() { _, _ = policies.ArgumentsValue(in.Action.Arguments) })
	ratio := float64(ms) / float64(max(d, time.Microsecond))
	t.Logf("MissingScopes %v, one decoding %v, ratio %.1f", ms, d, ratio)
	if ratio > 10 {
		t.Errorf("MissingScopes costs %.0fx decoding the arguments (%v vs %v): they are decoded per rule", ratio, ms, d)
	}
}
