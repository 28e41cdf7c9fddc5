package audit_test

import (
	"path/filepath"
	"testing"

	"github.com/agentid/agentid/audit"
)

// BenchmarkAppend measures appends per second with the default durability
// (fsync per batch) from concurrent callers; the final Flush is included.
// The "no-index" cases leave out the tree index (Options.NoTreeIndex), for
// its cost.
func BenchmarkAppend(b *testing.B) {
	for _, d := range []struct {
		name    string
		d       audit.Durability
		noIndex bool
	}{{"batch", audit.SyncBatch, false}, {"batch/no-index", audit.SyncBatch, true}, {"none", audit.SyncNone, false}, {"none/no-index", audit.SyncNone, true}} {
		b.Run(d.name, func(b *testing.B) {
			w, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{Durability: d.d, NoTreeIndex: d.noIndex})
			if err != nil {
				b.Fatal(err)
			}
			rec := decision(1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Append(rec); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			w.Close()
		})
	}
}
