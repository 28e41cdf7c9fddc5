package verifier

import (
	"container/list"
	"strings"
	"sync"
	"time"
)

// cache is a bounded LRU of values that expire, keyed by the credential
// itself (DER certificate, PEM or token): Go's map hash is far cheaper than
// a cryptographic digest, and equal keys are equal credentials.
type cache[V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type cacheEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, ll: list.New(), items: make(map[string]*list.Element)}
}

func (c *cache[V]) get(key string, now time.Time) (V, bool) {
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

func (c *cache[V]) put(key string, v V, expires time.Time) {
	key = strings.Clone(key) // lookups may pass views of callers' bytes
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
