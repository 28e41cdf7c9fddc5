package verifier

import (
	"fmt"
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

// TestNonceLifeCoversWindow: whenever a signature is first accepted (its
// created within the window of the clock, in whole seconds, the clock not),
// its nonce is remembered past created + window, the last instant at which
// the same signature passes the created check again.
func TestNonceLifeCoversWindow(t *testing.T) {
	created := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, w := range []time.Duration{time.Second, time.Minute, httpsig.DefaultWindow} {
		for first := created.Add(-w); !first.After(created.Add(w)); first = first.Add(w / 7) {
			life := nonceLife(first, created, w)
			if until := first.Add(life); !until.After(created.Add(w)) {
				t.Fatalf("window %s, first use %s: remembered until %s, a replay at created+window %s passes", w, first, until, created.Add(w))
			}
			if life > 2*w+time.Second {
				t.Fatalf("window %s: life %s exceeds 2·window + 1 s", w, life)
			}
		}
	}
}

// TestNonceCachePeerShare: one peer cannot fill the replay cache for all
// (review 5: with max_nonces reached by one task, every signed request of
// every task was refused): a peer holds at most its share of the cache's
// live nonces; past it, its own new nonces are refused
// (signature_nonce_capacity) while other peers' are taken, and its room
// comes back as its nonces expire.
func TestNonceCachePeerShare(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	c := newNonceCache(64)
	c.perPeer = 4
	life := 2 * time.Minute
	add := func(peer, nonce string, at time.Time) string {
		return httpsig.ReasonOf(c.addFor(peer, nonceKey(peer, nonce), at, life))
	}
	for i := range 4 {
		if r := add("greedy", fmt.Sprint(i), t0); r != "" {
			t.Fatalf("nonce %d: %s", i, r)
		}
	}
	if r := add("greedy", "4", t0); r != httpsig.ReasonNonceCapacity {
		t.Fatalf("over its share: %q", r)
	}
	if r := add("other", "x", t0); r != "" {
		t.Fatalf("another peer refused while one peer is at its share: %q", r)
	}
	if r := add("greedy", "5", t0.Add(life)); r != "" {
		t.Fatalf("after its nonces expired: %q", r)
	}
	if got := perPeerShare(1_000_000); got != 62_500 {
		t.Fatalf("default share of 1,000,000: %d", got)
	}
	if got := perPeerShare(3); got != 3 {
		t.Fatalf("share of a tiny cache: %d", got)
	}
}
