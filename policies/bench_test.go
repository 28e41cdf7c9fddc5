package policies_test

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
)

var sizes = []int{10, 100, 1000}

func loadGenerated(tb testing.TB, n int) *policies.Set {
	tb.Helper()
	set, diags := policies.LoadFiles([]policies.File{{Name: "gen.hcl", Src: []byte(policygen.HCL(policygen.Rules(n)))}})
	if diags.HasErrors() {
		tb.Fatal(diags)
	}
	return set
}

// BenchmarkDecide measures one decision over generated sets of 10, 100 and
// 1,000 rules (p50 and p99 are reported from a sample of single calls).
func BenchmarkDecide(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			set := loadGenerated(b, n)
			reqs := policygen.Requests(n, 1024, 1)
			ins := make([]*policies.Input, len(reqs))
			for i, r := range reqs {
				ins[i] = r.Input()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				set.Decide(ins[i%len(ins)])
			}
			b.StopTimer()
			p50, p99 := percentiles(set, ins)
			b.ReportMetric(float64(p50.Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(p99.Nanoseconds()), "p99-ns")
		})
	}
}

func percentiles(set *policies.Set, ins []*policies.Input) (p50, p99 time.Duration) {
	const batch = 64
	var samples []time.Duration
	for round := 0; round < 20; round++ {
		for _, in := range ins {
			start := time.Now()
			for range batch {
				set.Decide(in)
			}
			samples = append(samples, time.Since(start)/batch)
		}
	}
	slices.Sort(samples)
	return samples[len(samples)/2], samples[len(samples)*99/100]
}

// BenchmarkLoad measures compiling the generated 1,000-rule set and reports
// the heap it keeps.
func BenchmarkLoad(b *testing.B) {
	src := []byte(policygen.HCL(policygen.Rules(1000)))
	files := []policies.File{{Name: "gen.hcl", Src: src}}
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := policies.LoadFiles(files); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	b.ReportMetric(float64(compiledSize(files)), "compiled-bytes")
}

// compiledSize is the live heap growth that holding one compiled set costs.
func compiledSize(files []policies.File) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	set, _ := policies.LoadFiles(files)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(set)
	return after.HeapAlloc - before.HeapAlloc
}

// worstPattern is the costliest pattern the language allows: 8 wildcards
// (the most) and 127 bytes from the first to the last (the most), so the
// matcher steps 2 words per input byte; it ends in "**" so that no literal
// suffix check rejects the input first.
func worstPattern() string {
	lit := strings.Repeat("ab", 8)
	var b strings.Builder
	b.WriteString("/")
	for i := range 8 {
		b.WriteString(strings.Repeat("*", 1+i%2)) // "*" and "**" alternate
		switch {
		case i < 6:
			b.WriteString(lit)
		case i == 6:
			b.WriteString(lit + "bab")
		}
	}
	return b.String()
}

// BenchmarkDecideAdversarial measures one decision on inputs of the
// maximum length (policies.MaxPathLen, MaxNameLen) against the costliest
// patterns: the issue-16 patterns that made the backtracking matcher
// exponential, and the worst the language allows.
func BenchmarkDecideAdversarial(b *testing.B) {
	xs := strings.Repeat("/x", policies.MaxPathLen/2)
	as := "/" + strings.Repeat("a", policies.MaxPathLen-1)
	for _, bc := range []struct {
		name, pattern, path string
	}{
		{"issue16-4x**", "/**/x/**/x/**/x/**/y", xs[:len(xs)-2] + "/y"},
		{"issue16-8-wildcards", "/**a**a**a**a**a**a**ab**", as},
		{"worst-span-127", worstPattern(), as},
	} {
		b.Run(bc.name, func(b *testing.B) {
			src := fmt.Sprintf("rule \"r\" {\n effect = \"allow\"\n action {\n http { paths = [%q] }\n }\n}\n", bc.pattern)
			set, diags := policies.LoadFiles([]policies.File{{Name: "a.hcl", Src: []byte(src)}})
			if diags.HasErrors() {
				b.Fatal(diags)
			}
			in := &policies.Input{Action: policies.Action{Kind: "http", Method: "GET", Path: bc.path}}
			b.ReportAllocs()
			for b.Loop() {
				set.Decide(in)
			}
		})
	}
}

// BenchmarkDecideHostileInputs: the inputs of review 12 (issue 10) at
// their largest, each beside a plain string of the same size: a number
// literal in MCP arguments (refused by CheckArguments), a header, an
// argument and an AuthZEN context that a condition compares with a number,
// and a header under matches() with the alternation that made regexall
// quadratic (regexall over it is now a load error); a for expression over
// a header of commas, and a JSON array in the arguments, given to a list
// parameter (review 13), beside the same loop or array without it.
func BenchmarkDecideHostileInputs(b *testing.B) {
	const n = policies.MaxArgumentsLen - 16
	const hn = 64 << 10
	digits := func(n int) string { return strings.Repeat("7", n) }
	numArgs, strArgs := `{"n":`+digits(n-6)+`}`, `{"n":"x`+digits(n-9)+`"}`
	load := func(cond string) *policies.Set {
		set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte("rule \"r\" {\n effect = \"allow\"\n condition = " + cond + "\n}\n")}})
		if diags.HasErrors() {
			b.Fatal(diags)
		}
		return set
	}
	hdr := func(v string) *policies.Input {
		return &policies.Input{Action: policies.Action{Kind: "http", Method: "GET", Path: "/"}, Request: policies.Request{Headers: map[string][]string{"X-V": {v}}}}
	}
	mcp := func(a string) *policies.Input {
		return &policies.Input{Action: policies.Action{Kind: "mcp", Method: "tools/call", Name: "t", Arguments: a}}
	}
	ctx := func(c string) *policies.Input {
		return &policies.Input{Action: policies.Action{Kind: "http", Method: "GET", Path: "/"}, Context: []byte(c)}
	}
	hdrNum, argNum, ctxNum := load(`request.headers["x-v"] < 1000`), load(`action.arguments.n < 10`), load(`context.n < 10`)
	re := load(`matches("a[^x]*x|a", request.headers["x-v"])`)
	// review 13: a tuple given to a list parameter, and the same loop or
	// array without the conversion
	forAny := load(`anytrue([for s in split(",", request.headers["x-v"]) : s == "q"])`)
	forLen := load(`length([for s in split(",", request.headers["x-v"]) : s == "q"]) < 0`)
	arrDistinct, arrLen := load(`length(distinct(action.arguments.a)) == 0`), load(`length(action.arguments.a) < 0`)
	arrCond := load(`length(true ? action.arguments.a : []) == 0`)
	arr := func(n int) *policies.Input { return mcp(`{"a":[` + strings.Repeat(`"",`, n-1) + `""]}`) }
	arr16, arr64 := arr(16<<10), arr(64<<10)
	for _, bc := range []struct {
		name string
		f    func()
	}{
		{"CheckArguments/number-1MiB", func() { _ = policies.CheckArguments(numArgs) }},
		{"CheckArguments/string-1MiB", func() { _ = policies.CheckArguments(strArgs) }},
		{"header-as-number/number-64KiB", func() { hdrNum.Decide(hdr("0." + digits(hn-2))) }},
		{"header-as-number/string-64KiB", func() { hdrNum.Decide(hdr("x" + digits(hn-1))) }},
		{"argument-as-number/number-1MiB", func() { argNum.Decide(mcp(`{"n":"0.` + digits(n-10) + `"}`)) }},
		{"argument-as-number/string-1MiB", func() { argNum.Decide(mcp(strArgs)) }},
		{"context-number/number-1MiB", func() { ctxNum.Decide(ctx(numArgs)) }},
		{"context-number/string-1MiB", func() { ctxNum.Decide(ctx(strArgs)) }},
		{"matches-alternation/64KiB", func() { re.Decide(hdr(strings.Repeat("a", hn))) }},
		{"anytrue-for-split/64KiB-commas", func() { forAny.Decide(hdr(strings.Repeat(",", hn))) }},
		{"length-for-split/64KiB-commas", func() { forLen.Decide(hdr(strings.Repeat(",", hn))) }},
		{"distinct-array/16Ki-elements", func() { arrDistinct.Decide(arr16) }},
		{"length-array/16Ki-elements", func() { arrLen.Decide(arr16) }},
		{"conditional-array/16Ki-elements", func() { arrCond.Decide(arr16) }},
		{"distinct-array/64Ki-elements", func() { arrDistinct.Decide(arr64) }},
		{"length-array/64Ki-elements", func() { arrLen.Decide(arr64) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.f()
			}
		})
	}
}
