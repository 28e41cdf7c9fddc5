package bench

// Issue 13: can Tessera (POSIX storage, C2SP tlog-tiles) take the decision
// log? BenchmarkTlogAppend runs, in one process and one run, Tessera v1.0.4
// with its default options (batches of 256 entries or 250 ms, every file
// written O_SYNC and its directory synced) and agentid's audit.Writer with
// its default durability (fsync per batch), from 64 concurrent callers
// each appending a 250-byte decision record:
//
//   - tessera/durable: Add, then wait for the entry's index (the future
//     resolves once the batch is sequenced and integrated on disk): the
//     only way Tessera gives "durable at index N".
//   - audit/queued: audit.Writer.Append returns once queued (how decisions
//     are answered today).
//   - audit/durable: Append, then Flush (the caller waits until its record
//     is synced).
//
//	cd bench && go test -run '^$' -bench TlogAppend -benchtime 3s
import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
)

var tlogRecord = []byte(`{"seq":1,"time":"2026-11-29T10:00:00.001Z","type":"decision","peer":"spiffe://example.org/agent/researcher/task/T-42","serial":"2a","action":{"kind":"http","method":"GET","path":"/kb/1"},"decision":"allow","rules":["read-kb (kb.hcl:3)"],"policy_digest":"sha256:00","prev":"sha256:00"}`)

func BenchmarkTlogAppend(b *testing.B) {
	for _, tc := range []struct {
		name string
		wait bool
		opts func(*tessera.AppendOptions) *tessera.AppendOptions
	}{
		{"tessera/durable", true, func(o *tessera.AppendOptions) *tessera.AppendOptions { return o }},
		{"tessera/queued", false, func(o *tessera.AppendOptions) *tessera.AppendOptions { return o }},
		{"tessera/durable-2ms", true, func(o *tessera.AppendOptions) *tessera.AppendOptions {
			return o.WithBatching(tessera.DefaultBatchMaxSize, 2*time.Millisecond)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			driver, err := posix.New(ctx, posix.Config{Path: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			skey, _, err := note.GenerateKey(rand.Reader, "bench.example/log")
			if err != nil {
				b.Fatal(err)
			}
			signer, err := note.NewSigner(skey)
			if err != nil {
				b.Fatal(err)
			}
			app, shutdown, _, err := tessera.NewAppender(ctx, driver, tc.opts(tessera.NewAppendOptions().WithCheckpointSigner(signer)))
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			var last tessera.IndexFuture
			b.SetParallelism(32) // 64 callers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					f := app.Add(ctx, tessera.NewEntry(tlogRecord))
					if !tc.wait {
						mu.Lock()
						last = f
						mu.Unlock()
						continue
					}
					if _, err := f(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if last != nil {
				if _, err := last(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			b.StopTimer()
			shutdown(ctx)
		})
	}
	for _, durable := range []bool{false, true} {
		name := "audit/queued"
		if durable {
			name = "audit/durable"
		}
		b.Run(name, func(b *testing.B) {
			w, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{})
			if err != nil {
				b.Fatal(err)
			}
			rec := audit.Record{Type: audit.TypeDecision, Peer: "spiffe://example.org/agent/researcher/task/T-42", Serial: "2a",
				Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb/1"}, Decision: "allow",
				Rules: []string{"read-kb (kb.hcl:3)"}, PolicyDigest: "sha256:00"}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := w.Append(rec); err != nil {
						b.Error(err)
						return
					}
					if durable {
						if err := w.Flush(); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			b.StopTimer()
			w.Close()
		})
	}
}
