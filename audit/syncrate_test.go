package audit

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestFsyncRateIsBounded: under steady load the writer fsyncs at most once
// per SyncInterval (default 10 ms). An fsync costs 0.1–0.2 ms of kernel
// CPU here; the group commit used to start the next one as soon as the
// last returned, ~2,000 a second under any steady load, which cost the
// ext_authz closed loop more CPU per check than the rest of the audit
// path (issue 10). Records still reach the OS once per batch, so a kill -9
// loses no more than before; Flush still syncs at once.
func TestFsyncRateIsBounded(t *testing.T) {
	var calls atomic.Int64
	fsync = func(f logFile) error {
		calls.Add(1)
		time.Sleep(200 * time.Microsecond) // an fsync takes time on any disk
		return f.Sync()
	}
	t.Cleanup(func() { fsync = func(f logFile) error { return f.Sync() } })

	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, Options{BatchDelay: -1}) // no gathering delay: a batch per record
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	n := 0
	for time.Since(start) < 300*time.Millisecond {
		if _, err := w.AppendWait(Record{Type: TypeDecision, Peer: "spiffe://example.org/agent/a/task/T-1", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	elapsed := time.Since(start)
	// Records reach the OS without waiting for an fsync.
	if raw, err := os.ReadFile(path); err != nil || len(raw) == 0 {
		t.Fatalf("nothing in the file before Flush: %v", err)
	}
	got := calls.Load()
	if max := int64(elapsed/(10*time.Millisecond)) + 2; got > max {
		t.Fatalf("%d fsyncs for %d records in %v: want at most %d (one per 10 ms)", got, n, elapsed, max)
	}
	before := calls.Load()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if calls.Load() == before {
		t.Fatal("Flush returned without an fsync")
	}
	t.Logf("%d records, %d fsyncs in %v", n, got, elapsed)
}
