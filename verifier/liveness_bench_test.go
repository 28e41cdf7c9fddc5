package verifier_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
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
// with a one-member chain, against views of 10,000 and 100,000 live tasks:
// without creation times (tasks=), and as the feed sends them now — an
// X.509-SVID's peer, with its issue time, checked against its entry's
// creation time (created/), also with an hour of removals remembered at
// 10 a second (created+removed/: 36,000).
func BenchmarkLivenessCheck(b *testing.B) {
	ca := testca.New(b, td, now)
	c := claims()
	c.Deadline = now.Add(time.Hour)
	e, err := c.Extension(nil)
	if err != nil {
		b.Fatal(err)
	}
	auth := verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), Clock: func() time.Time { return now }})
	x509Peer, err := auth.Certificates(ca.CreateX509SVID(taskID, testca.WithExtensions(e), testca.WithLifetime(now.Add(-10*time.Second), now.Add(time.Hour))).Certificates)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range viewSizes {
		ids := liveIDs(n)
		ids = append(ids, taskID.String(), c.Chain[0])
		run := func(name string, v *verifier.LivenessView, p verifier.Peer) {
			b.Run(fmt.Sprintf("%stasks=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if err := v.Check(&p, now); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		v := &verifier.LivenessView{}
		v.Update(now, ids)
		run("", v, verifier.NewPeer(taskID, &c))
		tasks := make([]verifier.LiveTask, len(ids))
		for i, id := range ids {
			tasks[i] = verifier.LiveTask{ID: id, Created: now.Add(-time.Minute)}
		}
		v = &verifier.LivenessView{MaxStaleness: 2 * time.Hour}
		v.UpdateTasks(now.Add(-time.Hour), tasks)
		run("created/", v, x509Peer)
		gone := liveIDs(n + 36_000)[n:]
		for i := range gone {
			gone[i] = strings.Replace(gone[i], "researcher", "writer", 1)
		}
		for i := 0; i < len(gone); i += 10 {
			v.ApplyTasks(now.Add(-time.Hour+time.Duration(i/10+1)*100*time.Millisecond), nil, gone[i:i+10])
		}
		if v.Removed() != 36_000 {
			b.Fatalf("%d removals remembered", v.Removed())
		}
		run("created+removed/", v, x509Peer)
	}
}

// BenchmarkLivenessView is what a verifier's view of n live tasks holds in
// memory (live heap after GC, per task and in all), what a full listing
// costs it (a connect or reconnect), and what one delta of 10 tasks added
// and 10 removed costs (the steady state, once per feed interval; the view
// remembers the last hour of removals: 72,000 at this rate), and what each
// remembered removal holds (memory/removals).
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
		b.Run(fmt.Sprintf("memory/removals=%d", n), func(b *testing.B) {
			var heap float64
			for range b.N {
				v := &verifier.LivenessView{}
				v.Update(now, nil)
				before := liveHeap()
				for i := 0; i < n; i += 10 {
					gone := make([]string, 10) // decoded from the stream
					for j := range gone {
						gone[j] = strings.Clone(ids[i+j])
					}
					v.Apply(now.Add(time.Duration(i+1)*time.Millisecond), nil, gone)
				}
				heap = float64(liveHeap() - before)
				runtime.KeepAlive(v)
			}
			b.ReportMetric(heap/float64(n), "B/removal")
			b.ReportMetric(heap/(1<<20), "MiB")
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
