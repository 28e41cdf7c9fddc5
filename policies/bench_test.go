package policies_test

import (
	"fmt"
	"runtime"
	"slices"
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
