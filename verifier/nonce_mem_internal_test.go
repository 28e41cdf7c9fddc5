package verifier

import (
	"runtime"
	"testing"
	"time"
)

// TestNonceCacheMemory holds the replay cache to the memory per entry
// docs/signatures.md gives for max_nonces (84 B measured at 10^6 entries;
// at most 100 B at 200,000).
func TestNonceCacheMemory(t *testing.T) {
	const n = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := newNonceCache(n)
	now := time.Unix(1765065600, 0)
	for i := range n {
		if err := c.add(nonceKey("spiffe://example.org/agent/a/task/t", string(rune(i))+time.Duration(i).String()), now, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("%d entries: %.1f MB, %.0f B/entry", len(c.seen), float64(after.HeapAlloc-before.HeapAlloc)/1e6, float64(after.HeapAlloc-before.HeapAlloc)/float64(len(c.seen)))
	if per := float64(after.HeapAlloc-before.HeapAlloc) / n; len(c.seen) != n || per > 100 {
		t.Fatalf("%d entries, %.0f B/entry (docs/signatures.md says about 85)", len(c.seen), per)
	}
	runtime.KeepAlive(c)
}
