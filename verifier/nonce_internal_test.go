package verifier

import (
	"testing"
	"time"

	"github.com/agentid/agentid/svid/httpsig"
)

// TestNonceCache: a nonce is refused again while it lives; the cache is
// bounded — full of live nonces it refuses new ones (fail closed) — and
// expired nonces free their room.
func TestNonceCache(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	c := newNonceCache(3)
	life := 2 * time.Minute
	add := func(peer, nonce string, at time.Time) string {
		return httpsig.ReasonOf(c.add(nonceKey(peer, nonce), at, life))
	}
	for i, n := range []string{"a", "b", "c"} {
		if r := add("task-1", n, t0.Add(time.Duration(i)*time.Second)); r != "" {
			t.Fatalf("nonce %s: %s", n, r)
		}
	}
	if r := add("task-1", "a", t0.Add(time.Minute)); r != httpsig.ReasonReplayed {
		t.Fatalf("replay within the window: %q", r)
	}
	if r := add("task-2", "d", t0.Add(time.Minute)); r != httpsig.ReasonNonceCapacity {
		t.Fatalf("full: %q", r)
	}
	// "a" expires at t0+2m: room for one more, and "a" may be used again.
	if r := add("task-2", "d", t0.Add(life)); r != "" {
		t.Fatalf("after the first expiry: %q", r)
	}
	if r := add("task-1", "a", t0.Add(life+time.Second)); r != "" {
		t.Fatalf("an expired nonce: %q", r)
	}
	if len(c.seen) > 3 {
		t.Fatalf("%d entries, bound 3", len(c.seen))
	}
	// The same nonce of another peer is another key.
	if nonceKey("task-1", "x") == nonceKey("task-2", "x") || nonceKey("a", "bc") == nonceKey("ab", "c") {
		t.Fatal("keys collide")
	}
}
