package composer

import (
	"container/list"
	"crypto/x509/pkix"
	"sync"
	"time"

	"github.com/agentid/agentid/svid"
)

// task is what a successful lookup yields: the claims and their X.509
// extension, rendered once, and the version of the entry they were
// decoded from (entryVersion). All are immutable once cached.
type task struct {
	claims svid.Claims
	ext    pkix.Extension
	entry  string
}

// cache is a least-recently-used map from SPIFFE ID to task, bounded in
// size, whose items go stale ttl after they were fetched.
type cache struct {
	size int
	ttl  time.Duration

	mu    sync.Mutex
	order *list.List // of *item, most recently used first
	items map[string]*list.Element
}

type item struct {
	key     string
	task    *task
	fetched time.Time
}

func newCache(size int, ttl time.Duration) *cache {
	return &cache{size: size, ttl: ttl, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the fresh task of key. A stale item is dropped.
func (c *cache) get(key string, now time.Time) (*task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*item)
	if now.Sub(it.fetched) >= c.ttl || now.Before(it.fetched) {
		c.removeLocked(el)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it.task, true
}

// put stores t under key, evicting the least recently used items beyond
// the size bound. With a zero ttl nothing is stored.
func (c *cache) put(key string, t *task, now time.Time) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &item{key: key, task: t, fetched: now}
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&item{key: key, task: t, fetched: now})
	for c.order.Len() > c.size {
		c.removeLocked(c.order.Back())
	}
}

// drop forgets key.
func (c *cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
}

func (c *cache) removeLocked(el *list.Element) {
	c.order.Remove(el)
	delete(c.items, el.Value.(*item).key)
}

// len is the number of items, fresh or stale.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
