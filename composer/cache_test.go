package composer

import (
	"fmt"
	"testing"
	"time"
)

func TestCacheBounds(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	c := newCache(3, time.Minute)
	for i := range 10 {
		c.put(fmt.Sprint(i), &task{}, now)
		if c.len() > 3 {
			t.Fatalf("cache holds %d items, bound 3", c.len())
		}
	}
	for _, k := range []string{"7", "8", "9"} {
		if _, ok := c.get(k, now); !ok {
			t.Fatalf("%s evicted, want the three most recent kept", k)
		}
	}
	if _, ok := c.get("9", now.Add(time.Minute)); ok {
		t.Fatal("item served at its TTL")
	}
	if c.len() != 2 {
		t.Fatalf("stale item kept: %d items", c.len())
	}
	if _, ok := c.get("8", now.Add(-time.Second)); ok {
		t.Fatal("item served before it was fetched (clock went back)")
	}
	c.drop("7")
	if c.len() != 0 {
		t.Fatalf("%d items after drop", c.len())
	}
	off := newCache(3, 0)
	off.put("a", &task{}, now)
	if off.len() != 0 {
		t.Fatal("a zero-TTL cache stored an item")
	}
}
