package verifier_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
)

// liveIDs is n task SPIFFE IDs of a realistic length (62 bytes).
func liveIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("spiffe://example.org/agent/researcher/task/T-%016d", i)
	}
	return ids
}

var viewSizes = []int{10_000, 100_000}

// BenchmarkLivenessCheck is the pipeline's liveness stage for a task peer
// with a one-member chain, against views of 10,000 and 100,000 live tasks.
func BenchmarkLivenessCheck(b *testing.B) {
	for _, n := range viewSizes {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			ids := liveIDs(n)
			c := claims()
			c.Deadline = now.Add(time.Hour)
			ids = append(ids, taskID.String(), c.Chain[0])
			v := &verifier.LivenessView{}
			v.Update(now, ids)
			p := verifier.NewPeer(taskID, &c)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := v.Check(&p, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLivenessView is what a verifier's view of n live tasks holds in
// memory (live heap after GC, per task and in all), what a full listing
// costs it (a connect or reconnect), and what one delta of 10 tasks added
// and 10 removed costs (the steady state, once per feed interval; the view
// remembers the last 30 s of removals).
func BenchmarkLivenessView(b *testing.B) {
	for _, n := range viewSizes {
		ids := liveIDs(n + 1_000_000)
		b.Run(fmt.Sprintf("memory/tasks=%d", n), func(b *testing.B) {
			var heap float64
			for range b.N {
				before := liveHeap()
				live := make([]string, n) // decoded from the stream: strings of their own
				for i, id := range ids[:n] {
					live[i] = strings.Clone(id)
				}
				v := &verifier.LivenessView{}
				v.Update(now, live)
				live = nil
				heap = float64(liveHeap() - before)
				runtime.KeepAlive(v)
			}
			b.ReportMetric(heap/float64(n), "B/task")
			b.ReportMetric(heap/(1<<20), "MiB")
		})
		b.Run(fmt.Sprintf("full/tasks=%d", n), func(b *testing.B) {
			v := &verifier.LivenessView{}
			at := now
			b.ReportAllocs()
			for range b.N {
				at = at.Add(time.Millisecond)
				v.Update(at, ids[:n])
			}
		})
		b.Run(fmt.Sprintf("delta/tasks=%d", n), func(b *testing.B) {
			v := &verifier.LivenessView{}
			v.Update(now, ids[:n])
			at := now
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				at = at.Add(500 * time.Millisecond) // the dev feed interval
				lo := (i * 10) % 1_000_000
				if err := v.Apply(at, ids[n+lo:n+lo+10], ids[lo:lo+10]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
