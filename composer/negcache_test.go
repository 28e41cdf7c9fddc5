package composer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
)

// TestNegativeCache: a storm of signings for a revoked task (its entry
// deleted) reads the Entry API once per negative_cache_ttl (default 1 s),
// concurrent callers included; once the TTL has passed it looks again, and
// a task whose entry is back is served.
func TestNegativeCache(t *testing.T) {
	clk := newClock()
	c, fe := newComposer(t, "", clk)
	id := taskID("planner", "T-1")
	ids := fe.Add(entryOf(root("T-1"), "agentid"))
	if _, err := c.Claims(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	deleteEntries(t, fe, ids...)
	clk.Add(composer.DefaultCacheTTL) // the positive entry is stale
	calls := fe.ListCalls.Load()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := c.JWTClaims(context.Background(), id); composer.ReasonOf(err) != composer.ReasonNoEntry {
					t.Errorf("revoked task: %v, want no_entry", err)
				}
			}
		}()
	}
	wg.Wait()
	if n := fe.ListCalls.Load() - calls; n != 1 {
		t.Errorf("200 signings of a revoked task read the Entry API %d times, want 1", n)
	}
	clk.Add(999 * time.Millisecond)
	c.Claims(context.Background(), id) //nolint:errcheck // counted
	if n := fe.ListCalls.Load() - calls; n != 1 {
		t.Errorf("within negative_cache_ttl: %d reads, want 1", n)
	}
	fe.Add(entryOf(root("T-1"), "agentid"))
	clk.Add(time.Millisecond)
	if _, err := c.Claims(context.Background(), id); err != nil {
		t.Errorf("after negative_cache_ttl the entry is read again: %v", err)
	}
	if n := fe.ListCalls.Load() - calls; n != 2 {
		t.Errorf("after negative_cache_ttl: %d reads, want 2", n)
	}
}

// TestNegativeCacheDisabled: negative_cache_ttl = "0s" reads on every
// signing; other refusals (here a duplicate entry) are never cached.
func TestNegativeCacheDisabled(t *testing.T) {
	for _, tt := range []struct {
		name, hcl string
		dup       bool
	}{{"disabled", `negative_cache_ttl = "0s"`, false}, {"duplicate entry", "", true}} {
		t.Run(tt.name, func(t *testing.T) {
			c, fe := newComposer(t, tt.hcl, newClock())
			if tt.dup {
				fe.Add(entryOf(root("T-1"), "agentid"), entryOf(root("T-1"), "agentid"))
			}
			for range 3 {
				c.Claims(context.Background(), taskID("planner", "T-1")) //nolint:errcheck // counted
			}
			if n := fe.ListCalls.Load(); n != 3 {
				t.Errorf("%d reads for 3 signings, want 3", n)
			}
		})
	}
}
