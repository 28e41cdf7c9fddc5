package registrar

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkCreate creates root tasks against the in-memory fake Entry API
// over a real gRPC unix socket: three ListEntries and one BatchCreateEntry
// per task. The fake's linear scans grow with b.N; the figure is for the
// registrar's own cost, not SPIRE's.
func BenchmarkCreate(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := f.r.Create(ctx, plannerRequest("T-"+strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "tasks/s")
}
