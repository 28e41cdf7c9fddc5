package audit_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
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

// BenchmarkOpen measures Open of a log of 100,000 signed records (a
// checkpoint every 1,000): the replay that rebuilds the tree and checks the
// chain, the checkpoint roots and the tree index. Close adds nothing (no
// record since Open).
func BenchmarkOpen(b *testing.B) {
	ca := testca.New(b, td, time.Now().Add(-time.Minute))
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 1000, Durability: audit.SyncNone}
	path := filepath.Join(b.TempDir(), "audit.log")
	w, err := audit.Open(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 100_000 {
		w.Append(decision(i))
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		w, err := audit.Open(path, opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "lines/s")
}
