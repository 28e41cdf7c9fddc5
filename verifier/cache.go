package verifier

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cache is a bounded cache of values that expire, keyed by the
// credential's kind and the credential itself (DER certificate, PEM or
// token): Go's map hash is far cheaper than a cryptographic digest, and
// equal keys are equal credentials of the same kind.
//
// Lookups share a read lock and mark the entry used with an atomic flag,
// so concurrent requests for the same peer do not queue on a mutex (they
// did with a list-based LRU, whose every hit moved an element under an
// exclusive lock). Eviction is CLOCK, an approximation of LRU: the hand
// skips (and clears) entries used since it last passed and takes the
// first expired or unused one.
type cache[V any] struct {
	mu    sync.RWMutex
	max   int
	items map[cacheKey]*cacheEntry[V]
	ring  []*cacheEntry[V] // every entry, in the slots the hand walks
	hand  int
	gen   atomic.Uint64 // advanced by clear: a put of an older generation is dropped
}

// cacheKey tags a credential with its kind: the same bytes presented as
// another kind of credential are another key.
type cacheKey struct {
	kind CredentialKind
	cred string
}

// cacheEntry is immutable but for used: a replaced value gets a new entry.
type cacheEntry[V any] struct {
	key     cacheKey
	val     V
	expires time.Time
	slot    int
	used    atomic.Bool
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, items: make(map[cacheKey]*cacheEntry[V])}
}

func (c *cache[V]) get(key cacheKey, now time.Time) (V, bool) {
	if v := c.lookup(key, now); v != nil {
		return *v, true
	}
	var zero V
	return zero, false
}

// lookup is get without the copy: the value of a live entry, which the
// caller must only read (entries are immutable), or nil.
func (c *cache[V]) lookup(key cacheKey, now time.Time) *V {
	c.mu.RLock()
	e, ok := c.items[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil // an expired entry is replaced by the next put or the hand
	}
	if !e.used.Load() {
		e.used.Store(true)
	}
	return &e.val
}

// generation is the cache's generation, to pass to put: take it before
// computing the value, so that a value computed before a clear is not
// stored after it.
func (c *cache[V]) generation() uint64 { return c.gen.Load() }

// clear forgets every entry.
func (c *cache[V]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	clear(c.items)
	clear(c.ring)
	c.ring, c.hand = c.ring[:0], 0
}

func (c *cache[V]) put(key cacheKey, v V, expires, now time.Time, gen uint64) {
	key.cred = strings.Clone(key.cred) // lookups may pass views of callers' bytes
	e := &cacheEntry[V]{key: key, val: v, expires: expires}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return // computed with what a clear since declared stale
	}
	if old, ok := c.items[key]; ok {
		e.slot = old.slot
		c.ring[e.slot] = e
		c.items[key] = e
		return
	}
	if len(c.ring) < c.max {
		e.slot = len(c.ring)
		c.ring = append(c.ring, e)
		c.items[key] = e
		return
	}
	for {
		victim := c.ring[c.hand]
		if !victim.used.Load() || !now.Before(victim.expires) {
			delete(c.items, victim.key)
			e.slot = c.hand
			c.ring[c.hand] = e
			c.items[key] = e
			c.hand = (c.hand + 1) % len(c.ring)
			return
		}
		victim.used.Store(false)
		c.hand = (c.hand + 1) % len(c.ring)
	}
}

func (c *cache[V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.items)
}
