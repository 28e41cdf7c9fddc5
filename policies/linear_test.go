package policies_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
)

// decideBudget is how long one adversarial decision may take in the
// regression tests. The linear matcher takes tens of microseconds (see
// BenchmarkDecideAdversarial); the backtracking matcher it replaced took
// seconds for 800 bytes and would not finish for 8 KiB, so the bound
// separates them by orders of magnitude and does not make the test flaky
// on a loaded machine or under the race detector.
const decideBudget = 50 * time.Millisecond

// within runs f and fails the test if it does not return within budget
// (a super-linear matcher would not return for a long time: the goroutine
// is left behind and ends with the test binary).
func within(t *testing.T, budget time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() { f(); close(done) }()
	select {
	case <-done:
		if el := time.Since(start); el > budget {
			t.Errorf("took %v, want < %v", el, budget)
		}
	case <-time.After(budget):
		t.Fatalf("not done after %v (super-linear matching?)", budget)
	}
}

// decideWithin is set.Decide(in) within decideBudget.
func decideWithin(t *testing.T, set *policies.Set, in *policies.Input) policies.Decision {
	t.Helper()
	var d policies.Decision
	within(t, decideBudget, func() { d = set.Decide(in) })
	return d
}

// repeatTo repeats unit until the string is n bytes long.
func repeatTo(prefix, unit, suffix string, n int) string {
	var b strings.Builder
	b.WriteString(prefix)
	for b.Len()+len(unit)+len(suffix) <= n {
		b.WriteString(unit)
	}
	for b.Len()+len(suffix) < n {
		b.WriteByte(unit[len(unit)-1])
	}
	b.WriteString(suffix)
	return b.String()
}

// TestAdversarialPatternsDecideFast is the regression test of issue 16:
// patterns that made the backtracking matcher exponential, against inputs
// of the maximum length, in every place a pattern matches request data.
func TestAdversarialPatternsDecideFast(t *testing.T) {
	const n = 8 << 10
	xs := repeatTo("", "/x", "", n) // "/x/x/x…", 8 KiB
	as := repeatTo("/", "a", "", n) // "/aaa…", 8 KiB
	tests := []struct {
		name, action, pattern string
		in                    policies.Action
		want                  bool
	}{
		{"http 4x** no match", "http { paths = [%q] }", "/**/x/**/x/**/x/**/y", policies.Action{Kind: "http", Method: "GET", Path: xs}, false},
		{"http 4x** match", "http { paths = [%q] }", "/**/x/**/x/**/x/**/y", policies.Action{Kind: "http", Method: "GET", Path: xs[:n-2] + "/y"}, true},
		{"http 5x** trailing", "http { paths = [%q] }", "/**/x/**/x/**/x/**/y/**", policies.Action{Kind: "http", Method: "GET", Path: xs}, false},
		{"http 8 wildcards", "http { paths = [%q] }", "/**a**a**a**a**a**a**a**b", policies.Action{Kind: "http", Method: "GET", Path: as}, false},
		{"http 8 wildcards trailing", "http { paths = [%q] }", "/**a**a**a**a**a**a**ab**", policies.Action{Kind: "http", Method: "GET", Path: as}, false},
		{"http * segments", "http { paths = [%q] }", "/*a*a*a*a*a*a*a*b", policies.Action{Kind: "http", Method: "GET", Path: as}, false},
		{"grpc", "grpc { methods = [%q] }", "/**a**a**a**a**a**a**ab**", policies.Action{Kind: "grpc", Path: as[:policies.MaxMethodLen]}, false},
		{"mcp", "mcp { tools = [%q] }", "**a**a**a**a**a**a**ab**", policies.Action{Kind: "mcp", Name: as[1 : policies.MaxNameLen+1]}, false},
		{"generic", "generic {\n kind = \"queue\"\n names = [%q]\n }", "**a**a**a**a**a**a**ab**", policies.Action{Kind: "queue", Name: as[1 : policies.MaxNameLen+1]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf("rule \"r\" {\n effect = \"allow\"\n action {\n "+tt.action+"\n }\n}\n", tt.pattern)
			set := mustLoad(t, src)
			if d := decideWithin(t, set, &policies.Input{Action: tt.in, Now: now}); d.Allow != tt.want {
				t.Errorf("allow = %v, want %v (%s)", d.Allow, tt.want, d.Reason)
			}
		})
	}
}

// TestAdversarialConditionGlob: glob() in a condition, over a request path.
func TestAdversarialConditionGlob(t *testing.T) {
	const n = 8 << 10
	set := mustLoad(t, allowIf("", `glob("/**/x/**/x/**/x/**/y", action.path) || glob("/**a**a**a**a**a**a**ab**", action.path)`))
	for _, path := range []string{repeatTo("", "/x", "", n), repeatTo("/", "a", "", n)} {
		in := input(func(in *policies.Input) { in.Action.Path = path })
		if d := decideWithin(t, set, in); d.Allow {
			t.Errorf("allowed: %s", d.Reason)
		}
	}
}

// TestAdversarialSPIFFEID: SPIFFE ID patterns and delegator patterns.
func TestAdversarialSPIFFEID(t *testing.T) {
	seg := repeatTo("", "a", "", 1800)
	set := mustLoad(t, allowIf(`spiffe_id = "spiffe://example.org/**a**a**a**a**a**a**ab**"
    delegators_allowed = ["spiffe://example.org/**a**a**a**a**a**a**ab**"]`, ""))
	in := input()
	id, err := spiffeid.FromString("spiffe://example.org/agent/" + seg + "/task/" + seg)
	if err != nil {
		t.Fatal(err)
	}
	in.Peer.ID = id
	in.Peer.Claims.Chain = []string{"spiffe://example.org/agent/" + seg + "/task/" + seg}
	if d := decideWithin(t, set, in); d.Allow {
		t.Errorf("allowed: %s", d.Reason)
	}
}

// TestInputLimits: inputs at the maximum length are decided, one byte more
// is refused before matching, with a typed error.
func TestInputLimits(t *testing.T) {
	set := mustLoad(t, `rule "r" {
  effect = "allow"
  action {
    http    { paths = ["/**"] }
    grpc    { methods = ["/**"] }
    mcp     { tools = ["**"] }
    generic {
      kind  = "q"
      names = ["**"]
    }
  }
}
`)
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n-len(prefix)) }
	tests := []struct {
		a     policies.Action
		field string // "" when within the limits
		max   int
	}{
		{policies.Action{Kind: "http", Method: "GET", Path: long("/", policies.MaxPathLen)}, "", 0},
		{policies.Action{Kind: "http", Method: "GET", Path: long("/", policies.MaxPathLen+1)}, "action.path", policies.MaxPathLen},
		{policies.Action{Kind: "grpc", Path: long("/", policies.MaxMethodLen)}, "", 0},
		{policies.Action{Kind: "grpc", Path: long("/", policies.MaxMethodLen+1)}, "action.path", policies.MaxMethodLen},
		{policies.Action{Kind: "mcp", Name: long("", policies.MaxNameLen)}, "", 0},
		{policies.Action{Kind: "mcp", Name: long("", policies.MaxNameLen+1)}, "action.name", policies.MaxNameLen},
		{policies.Action{Kind: "q", Name: long("", policies.MaxNameLen+1)}, "action.name", policies.MaxNameLen},
		{policies.Action{Kind: long("q", policies.MaxNameLen+1)}, "action.kind", policies.MaxNameLen},
		{policies.Action{Kind: "http", Method: long("G", policies.MaxNameLen+1), Path: "/"}, "action.method", policies.MaxNameLen},
	}
	for _, tt := range tests {
		err := tt.a.CheckLimits()
		d := set.Decide(&policies.Input{Action: tt.a, Now: now})
		e := set.Explain(&policies.Input{Action: tt.a, Now: now})
		if tt.field == "" {
			if err != nil || !d.Allow || d.Limit != nil || !e.Allow {
				t.Errorf("%s %d bytes: err %v, allow %v, limit %v", tt.a.Kind, len(tt.a.Path+tt.a.Name), err, d.Allow, d.Limit)
			}
			continue
		}
		var le *policies.LimitError
		if !errors.As(err, &le) || le.Field != tt.field || le.Max != tt.max || le.Len != tt.max+1 {
			t.Errorf("%s: CheckLimits = %#v", tt.field, err)
			continue
		}
		if d.Allow || d.Limit == nil || *d.Limit != *le || d.Reason != err.Error() || !strings.HasPrefix(d.Reason, policies.ReasonInputTooLong+": ") {
			t.Errorf("%s: decision %+v", tt.field, d)
		}
		if e.Allow || e.Limit == nil || len(e.Trace) != 0 {
			t.Errorf("%s: explain %+v", tt.field, e)
		}
	}
	if got := (&policies.LimitError{Field: "action.path", Len: 9000, Max: 8192}).Error(); got != "input too long: action.path is 9000 bytes, more than 8192" {
		t.Errorf("Error() = %q", got)
	}
}

// TestAdversarialLoad: lint compares every pattern with the others' text
// (to find shadowed rules), so a costly pattern beside a long literal one
// made loading itself exponential; FuzzLoad stalled on such files.
func TestAdversarialLoad(t *testing.T) {
	src := fmt.Sprintf(`rule "a" {
  effect = "allow"
  action {
    http { paths = ["/**a**a**a**a**a**a**ab**"] }
  }
}
rule "b" {
  effect = "allow"
  action {
    http { paths = [%q] }
  }
}
`, "/"+strings.Repeat("a", 100))
	var set *policies.Set
	within(t, time.Second, func() { set, _ = policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(src)}}) })
	if set == nil {
		t.Error("load failed")
	}
}

// TestConditionFunctionsLinear: distinct and subset (go-cty's compare
// every pair or hash with CRC-32) keep their results on a path of
// distinct segments (TestDistinctLinear times distinct).
func TestConditionFunctionsLinear(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < policies.MaxPathLen-8; i++ {
		fmt.Fprintf(&b, "/%x", i)
	}
	path := b.String()
	set := mustLoad(t, allowIf("", `(length(distinct(split("/", action.path))) == length(split("/", action.path))
    && join(",", distinct(["a", "b", "a", "c", "b"])) == "a,b,c"
    && !subset(split("/", action.path), ["", "0"])
    && subset(["a", "a"], ["b", "a"]) && subset([], ["a"]) && !subset(["a"], []))`))
	in := input(func(in *policies.Input) { in.Action.Path = path })
	if d := set.Decide(in); !d.Allow {
		t.Errorf("denied: %s %v", d.Reason, d.Errors)
	}
}
