package verifier

import (
	"container/list"
	"strings"
	"sync"
	"time"
)

// cache is a bounded LRU of values that expire, keyed by the credential's
// kind and the credential itself (DER certificate, PEM or token): Go's map
// hash is far cheaper than a cryptographic digest, and equal keys are equal
// credentials of the same kind.
type cache[V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[cacheKey]*list.Element
}

// cacheKey tags a credential with its kind: the same bytes presented as
// another kind of credential are another key.
type cacheKey struct {
	kind CredentialKind
	cred string
}

type cacheEntry[V any] struct {
	key     cacheKey
	val     V
	expires time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, ll: list.New(), items: make(map[cacheKey]*list.Element)}
}

func (c *cache[V]) get(key cacheKey, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[key]
	if !ok {
		return zero, false
	}
	e := el.Value.(*cacheEntry[V])
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

func (c *cache[V]) put(key cacheKey, v V, expires time.Time) {
	key.cred = strings.Clone(key.cred) // lookups may pass views of callers' bytes
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry[V]{key, v, expires}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry[V]{key, v, expires})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry[V]).key)
	}
}

func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
