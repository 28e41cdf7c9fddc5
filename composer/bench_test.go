package composer_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/agentid/agentid/composer"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// benchComposer returns a composer on an in-memory source holding n
// delegated tasks T-0…T-(n-1), with a cache large enough for all.
func benchComposer(b *testing.B, hcl string, n int) *composer.Composer {
	src := memSource{}
	for i := range n {
		src.add(entryOf(delegated(fmt.Sprintf("T-%d", i+10)), "agentid"))
	}
	return composer.New(mustConfig(b, hcl), cloneSource{src}, composer.WithClock(newClock().Now))
}

// cloneSource hands out fresh copies of the entries, as a gRPC client
// does, so that memory figures count what the cache retains.
type cloneSource struct{ m memSource }

func (s cloneSource) EntriesByID(ctx context.Context, id spiffeid.ID) ([]*types.Entry, error) {
	entries, err := s.m.EntriesByID(ctx, id)
	out := make([]*types.Entry, len(entries))
	for i, e := range entries {
		out[i] = proto.Clone(e).(*types.Entry)
	}
	return out, err
}

// BenchmarkComposeClaims: the claims of a task whose entry is cached.
func BenchmarkComposeClaims(b *testing.B) {
	c := benchComposer(b, "", 1)
	id := taskID("researcher", "T-10")
	ctx := context.Background()
	if _, err := c.Claims(ctx, id); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Claims(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeExtension: the X.509 extension of a cached task.
func BenchmarkComposeExtension(b *testing.B) {
	c := benchComposer(b, "", 1)
	id := taskID("researcher", "T-10")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Extension(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeJWTClaims: the JWT claims maps of a cached task.
func BenchmarkComposeJWTClaims(b *testing.B) {
	c := benchComposer(b, "", 1)
	id := taskID("researcher", "T-10")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.JWTClaims(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntryToClaims: a cache miss without the network: a fresh copy
// of the entry → selectors → claims → validation → extension (cache
// disabled).
func BenchmarkEntryToClaims(b *testing.B) {
	c := benchComposer(b, `cache_ttl = "0s"`, 1)
	id := taskID("researcher", "T-10")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Claims(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheMemory10k reports the heap held by a cache of 10,000
// delegated tasks (chain of 2, one scope): claims, their extension and the
// cache's bookkeeping. Run it with -benchtime=1x.
func BenchmarkCacheMemory10k(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	for b.Loop() {
		c := benchComposer(b, "", n)
		before := heapInUse()
		for i := range n {
			if _, err := c.Extension(ctx, taskID("researcher", fmt.Sprintf("T-%d", i+10))); err != nil {
				b.Fatal(err)
			}
		}
		after := heapInUse()
		runtime.KeepAlive(c)
		b.ReportMetric(float64(after-before)/(1<<20), "MiB/10k-tasks")
		b.ReportMetric(float64(after-before)/n, "B/task")
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
