package composer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
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

// entrySource serves one entry per SPIFFE ID, replaceable.
type entrySource struct{ e *types.Entry }

func (s *entrySource) EntriesByID(context.Context, spiffeid.ID) ([]*types.Entry, error) {
	return []*types.Entry{s.e}, nil
}

// TestDecodedTaskReuse: the task decoded from an entry is reused while the
// entry is the same version (entry ID, revision, expiry) and younger than
// cache_ttl; another entry of the same SPIFFE ID (the task created again)
// is decoded afresh.
func TestDecodedTaskReuse(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/T-1")
	entry := func(entryID, principal string) *types.Entry {
		c := svid.Claims{V: svid.Version, Agent: "planner", Task: "T-1", Model: "openai/gpt-4o",
			Prompt: "sha256:" + strings.Repeat("ab", 32), Scope: []string{"kb:read"}, Principal: principal,
			Deadline: now.Add(time.Hour)}
		e := &types.Entry{Id: entryID, SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: id.Path()},
			ExpiresAt: c.Deadline.Unix()}
		for _, v := range c.ScopedSelectors() {
			e.Selectors = append(e.Selectors, &types.Selector{Type: "agentid", Value: v})
		}
		return e
	}
	cfg, err := ParseConfig(`cache_ttl = "5s"`, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	src := &entrySource{e: entry("e1", "spiffe://example.org/user/alice")}
	c := New(cfg, src, WithClock(func() time.Time { return now }))
	first, err := c.task(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.task(context.Background(), id); again != first {
		t.Error("the same entry was decoded again within cache_ttl")
	}
	src.e = entry("e2", "spiffe://example.org/user/carol")
	second, err := c.task(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || second.claims.Principal != "spiffe://example.org/user/carol" {
		t.Errorf("re-created entry: principal %s (reused: %v)", second.claims.Principal, second == first)
	}
}
