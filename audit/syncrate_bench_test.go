//go:build unix

package audit_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
)

// BenchmarkAppendPaced is the audit writer's process CPU per record (the
// callers, the writer's goroutine and the kernel's write and fsync work)
// at a steady 20,000 records/s — the rate of the ext_authz closed loop on
// this machine — with the default SyncInterval (10 ms) and with fsyncs
// back to back (SyncInterval -1, as before). CPU time rather than
// throughput: on the shared machine it moves far less with other tenants'
// load.
func BenchmarkAppendPaced(b *testing.B) {
	for _, bc := range []struct {
		name     string
		interval time.Duration
		batch    time.Duration
	}{{"interval-10ms", 0, 0}, {"back-to-back", -1, 0}, {"batch-10ms", 0, 10 * time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			w, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{SyncInterval: bc.interval, BatchDelay: bc.batch})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			rec := decision(1)
			const rate = 20000
			const burst = 20 // records per tick of 1 ms
			tick := time.NewTicker(time.Second * burst / rate)
			defer tick.Stop()
			s0 := w.Syncs()
			c0 := cpu()
			b.ResetTimer()
			for n := 0; n < b.N; n += burst {
				<-tick.C
				for range burst {
					if err := w.Append(rec); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu()-c0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(w.Syncs()-s0)/b.Elapsed().Seconds(), "fsyncs/s")
		})
	}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWriteFloor is the kernel's share of a record at the writer's
// default durability, without the writer: 750-byte lines (a verifier
// decision's size) written to a file in batches of 40 (2 ms of 20,000
// records/s) with an fsync every 5 batches (every 10 ms), as process CPU
// per record. Nothing is hashed or encoded: what is left when the audit
// log costs nothing but its I/O.
func BenchmarkWriteFloor(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "floor.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	batch := bytes.Repeat(append(bytes.Repeat([]byte{'a'}, 749), '\n'), 40)
	c0 := cpu()
	for n := 0; n < b.N; n += 40 {
		if _, err := f.Write(batch); err != nil {
			b.Fatal(err)
		}
		if (n/40)%5 == 4 {
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu()-c0)/float64(b.N), "cpu-ns/op")
}
