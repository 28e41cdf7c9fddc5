package server

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"
)

// BenchmarkLivenessFeed is the feed's cost per connected verifier: S
// verifiers watch one registrar over real gRPC with SPIFFE mTLS on
// loopback while 10,000 tasks are live and 10 are created and 10 revoked
// per update (a fleet starting and ending ~20 tasks per 500 ms). It
// reports the CPU (user+system, registrar and clients together, in one
// process) per update — the listing's diff once, plus each subscriber's
// share — and per update and subscriber, and the bytes of each update;
// the difference between the runs is the cost of one more verifier. The
// listing itself is a fake here: its cost is per registrar, not per
// verifier (BenchmarkLiveTasksList in e2e/ measures it on a real SPIRE).
func BenchmarkLivenessFeed(b *testing.B) {
	for _, subs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("tasks=10000/verifiers=%d", subs), func(b *testing.B) { feedBench(b, 10000, subs) })
	}
}

func feedBench(b *testing.B, tasks, subs int) {
	r, _ := newRegistrar(b, loadPolicy(b))
	verifierID := spiffeid.RequireFromString("spiffe://example.org/agentid/verifier")
	svc := New(r, WithLiveness([]spiffeid.ID{verifierID}, time.Millisecond))
	ids := make([]string, tasks)
	for i := range ids {
		ids[i] = fmt.Sprintf("spiffe://example.org/agent/researcher/task/T-%08d", i)
	}
	var mu sync.Mutex
	next := tasks
	crt := make([]int64, len(ids)) // the entries' created_at, as SPIRE lists them
	for i := range crt {
		crt[i] = 1796628086 + int64(i)
	}
	svc.hub = newLivenessHub(func(context.Context) ([]string, []int64, []int64, error) {
		mu.Lock()
		defer mu.Unlock()
		// 10 revoked (the oldest), 10 created.
		out := make([]string, 0, len(ids))
		out = append(out, ids[10:]...)
		created := make([]int64, 0, len(ids))
		created = append(created, crt[10:]...)
		for range 10 {
			out = append(out, fmt.Sprintf("spiffe://example.org/agent/researcher/task/T-%08d", next))
			created = append(created, 1796628086+int64(next))
			next++
		}
		ids, crt = out, created
		return out, created, nil, nil
	}, 10*time.Millisecond, svc.tomb)
	ca := testca.New(b, testTD, time.Now())
	addr := serveAgent(b, svc, ca, ca.X509Bundle())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	var bytes, msgs int64
	var statsMu sync.Mutex
	target := b.N
	start := make(chan struct{})
	ready := sync.WaitGroup{}
	for range subs {
		s, err := agentClient(b, addr, ca.CreateX509SVID(verifierID), ca.X509Bundle()).WatchLiveness(ctx, &registrarv1.WatchLivenessRequest{})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Recv(); err != nil { // the full message
				b.Error(err)
				ready.Done()
				return
			}
			ready.Done()
			<-start
			for n := 0; n < target; n++ {
				m, err := s.Recv()
				if err != nil {
					b.Error(err)
					return
				}
				if m.BaseAsOfUnixNano == 0 {
					b.Error("a full message after the first: the subscriber fell behind")
					return
				}
				statsMu.Lock()
				bytes += int64(proto.Size(m))
				msgs++
				statsMu.Unlock()
			}
		}()
	}
	ready.Wait()
	before := cpuTime()
	b.ResetTimer()
	close(start)
	wg.Wait()
	b.StopTimer()
	used := cpuTime() - before
	if msgs > 0 {
		updates := float64(msgs) / float64(subs)
		b.ReportMetric(float64(used.Microseconds())/updates, "cpu-µs/update")
		b.ReportMetric(float64(used.Microseconds())/float64(msgs), "cpu-µs/update/verifier")
		b.ReportMetric(float64(bytes)/float64(msgs), "B/update")
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
