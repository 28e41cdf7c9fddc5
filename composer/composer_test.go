package composer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClaimsFromEntry(t *testing.T) {
	unix := &types.Selector{Type: "unix", Value: "uid:1001"}
	tests := []struct {
		name   string
		hcl    string
		claims svid.Claims
		entry  *types.Entry
	}{
		{name: "root", claims: root("T-1"), entry: entryOf(root("T-1"), "agentid")},
		{name: "root with operator selectors", claims: root("T-1"), entry: entryOf(root("T-1"), "agentid", unix)},
		{name: "delegated", claims: delegated("T-3"), entry: entryOf(delegated("T-3"), "agentid", unix)},
		{name: "custom selector type", hcl: `selector_type = "aid"`, claims: root("T-1"),
			entry: entryOf(root("T-1"), "aid", &types.Selector{Type: "agentid", Value: "ignored:1"})},
		{name: "custom OID", hcl: `extension_oid = "1.2.3.4"`, claims: delegated("T-3"), entry: entryOf(delegated("T-3"), "agentid")},
		{name: "root, task-scoped layout", claims: root("T-1"), entry: scopedEntryOf(root("T-1"), "agentid", unix)},
		{name: "delegated, task-scoped layout", claims: delegated("T-3"), entry: scopedEntryOf(delegated("T-3"), "agentid",
			&types.Selector{Type: "agentid", Value: "task:T-3:exe:sha256:" + strings.Repeat("ab", 32)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fe := newComposer(t, tt.hcl, newClock())
			fe.Add(tt.entry)
			id := taskID(tt.claims.Agent, tt.claims.Task)

			got, err := c.Claims(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.claims) {
				t.Fatalf("claims = %+v, want %+v", got, tt.claims)
			}

			ext, err := c.Extension(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !ext.Id.Equal(c.Config().OID) || ext.Critical {
				t.Fatalf("extension %s critical=%v, want %s non-critical", ext.Id, ext.Critical, c.Config().OID)
			}
			if dec, err := svid.DecodeExtension(ext); err != nil || !dec.Equal(tt.claims) {
				t.Fatalf("DecodeExtension = %+v, %v", dec, err)
			}

			m, err := c.JWTClaims(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			m["sub"] = id.String()
			dec, found, err := svid.FromJWTClaims(m, svid.WithTime(testNow))
			if err != nil || !found || !dec.Equal(tt.claims) {
				t.Fatalf("FromJWTClaims = %+v, %v, %v", dec, found, err)
			}
			if _, hasAct := m["act"]; hasAct != (len(tt.claims.Chain) > 0) {
				t.Fatalf("act present = %v for a chain of %d", hasAct, len(tt.claims.Chain))
			}
			if n := fe.ListCalls.Load(); n != 3 {
				t.Fatalf("ListEntries called %d times for three uses, want 3 (every use reads the entry)", n)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	id := taskID("planner", "T-1")
	expired := root("T-1")
	expired.Deadline = testNow.Add(-time.Second)
	foreign := delegated("T-1")
	foreign.Agent = "planner"
	foreign.Chain = []string{"spiffe://example.com/agent/planner/task/T-0"}
	withSelectors := func(e *types.Entry, sels ...*types.Selector) *types.Entry {
		e.Selectors = append(e.Selectors, sels...)
		return e
	}
	noExpiry := entryOf(root("T-1"), "agentid")
	noExpiry.ExpiresAt = 0

	tests := []struct {
		name    string
		hcl     string
		entries []*types.Entry
		reason  composer.Reason
		msg     string
	}{
		{name: "no entry", reason: composer.ReasonNoEntry,
			msg: "composer: spiffe://example.org/agent/planner/task/T-1: no_entry: no registration entry (never created or revoked)"},
		{name: "other tasks only", entries: []*types.Entry{entryOf(root("T-2"), "agentid")}, reason: composer.ReasonNoEntry},
		{name: "duplicate", entries: []*types.Entry{entryOf(root("T-1"), "agentid"), entryOf(root("T-1"), "agentid")},
			reason: composer.ReasonDuplicateEntry,
			msg:    "composer: spiffe://example.org/agent/planner/task/T-1: duplicate_entry: more than one registration entry, a task has exactly one"},
		{name: "expired", entries: []*types.Entry{entryOf(expired, "agentid")}, reason: composer.ReasonExpired,
			msg: `composer: spiffe://example.org/agent/planner/task/T-1: expired: entry "entry-1" expired at 2026-11-29T09:59:59Z`},
		{name: "no expires_at", entries: []*types.Entry{noExpiry}, reason: composer.ReasonExpired},
		{name: "wrong selector type", hcl: `selector_type = "aid"`, entries: []*types.Entry{entryOf(root("T-1"), "agentid")},
			reason: composer.ReasonInvalidEntry},
		{name: "unknown selector", reason: composer.ReasonInvalidEntry,
			entries: []*types.Entry{withSelectors(entryOf(root("T-1"), "agentid"), &types.Selector{Type: "agentid", Value: "colour:blue"})},
			msg: `composer: spiffe://example.org/agent/planner/task/T-1: invalid_entry: entry "entry-1": agentid selectors: ` +
				`svid: claims rejected: malformed: unknown selector "colour:blue"`},
		{name: "repeated task selector", reason: composer.ReasonInvalidEntry,
			entries: []*types.Entry{withSelectors(entryOf(root("T-1"), "agentid"), &types.Selector{Type: "agentid", Value: "task:T-9"})}},
		{name: "depth disagrees", reason: composer.ReasonInvalidEntry,
			entries: []*types.Entry{withSelectors(entryOf(root("T-1"), "agentid"), &types.Selector{Type: "agentid", Value: "delegator:0:spiffe://example.org/agent/a/task/b"})}},
		{name: "claims of another task", reason: composer.ReasonInvalidEntry,
			entries: []*types.Entry{func() *types.Entry {
				e := entryOf(root("T-9"), "agentid")
				e.SpiffeId.Path = id.Path()
				return e
			}()},
			msg: `composer: spiffe://example.org/agent/planner/task/T-1: invalid_entry: entry "entry-1": svid: claims rejected: ` +
				`SPIFFE ID mismatch: claims name agent "planner" task "T-9" but the SPIFFE ID is spiffe://example.org/agent/planner/task/T-1`},
		{name: "chain outside trust domains", entries: []*types.Entry{entryOf(foreign, "agentid")}, reason: composer.ReasonInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fe := newComposer(t, tt.hcl, newClock())
			fe.Add(tt.entries...)
			_, err := c.Claims(context.Background(), id)
			if got := composer.ReasonOf(err); got != tt.reason {
				t.Fatalf("reason = %v (%v), want %v", got, err, tt.reason)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Fatalf("error =\n%s\nwant\n%s", err, tt.msg)
			}
			if !errors.Is(err, &composer.Error{Reason: tt.reason, ID: id.String()}) {
				t.Fatalf("errors.Is does not match %v", err)
			}
			// Refusals are not cached, but for "no entry" (negative_cache_ttl):
			// the next call looks again.
			c.Claims(context.Background(), id) //nolint:errcheck // counted below
			want := int64(2)
			if tt.reason == composer.ReasonNoEntry {
				want = 1
			}
			if n := fe.ListCalls.Load(); n != want {
				t.Fatalf("ListEntries called %d times, want %d", n, want)
			}
		})
	}
}

func TestForeignChainAllowedByTrustDomains(t *testing.T) {
	foreign := root("T-1")
	foreign.Chain = []string{"spiffe://example.com/agent/planner/task/T-0"}
	c, fe := newComposer(t, `trust_domains = ["example.com"]`, newClock())
	fe.Add(entryOf(foreign, "agentid"))
	if _, err := c.Claims(context.Background(), taskID("planner", "T-1")); err != nil {
		t.Fatal(err)
	}
}

func TestNotTask(t *testing.T) {
	c, fe := newComposer(t, "", newClock())
	for _, s := range []string{
		"spiffe://example.org/spire/server",
		"spiffe://example.org/spire/agent/join_token/node1",
		"spiffe://example.org/for/health/check/only",
		"spiffe://example.org/workload/me",
		"spiffe://example.org/agent/planner",
		"spiffe://example.org/agent/planner/task/T-1/extra",
	} {
		id := spiffeid.RequireFromString(s)
		if composer.Applies(id) {
			t.Errorf("Applies(%s) = true", s)
		}
		if _, err := c.Claims(context.Background(), id); composer.ReasonOf(err) != composer.ReasonNotTask {
			t.Errorf("Claims(%s) error = %v, want not_task", s, err)
		}
	}
	if n := fe.ListCalls.Load(); n != 0 {
		t.Fatalf("ListEntries called %d times for non-task IDs", n)
	}
}

// TestEverySigningReadsTheEntry: whatever cache_ttl says, every use reads
// the task's entry (a task ID revoked and created again has another entry:
// TestRecreatedTaskGetsItsOwnClaims); a revoked task is refused at the next
// signing.
func TestEverySigningReadsTheEntry(t *testing.T) {
	clk := newClock()
	c, fe := newComposer(t, `cache_ttl = "5s"`, clk)
	ids := fe.Add(entryOf(root("T-1"), "agentid"))
	id := taskID("planner", "T-1")
	for i, advance := range []time.Duration{0, 0, 4 * time.Second, time.Second} {
		clk.Add(advance)
		if _, err := c.Claims(context.Background(), id); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n := fe.ListCalls.Load(); n != int64(i+1) {
			t.Fatalf("step %d: ListEntries called %d times, want %d", i, n, i+1)
		}
	}
	deleteEntries(t, fe, ids...)
	if _, err := c.Claims(context.Background(), id); composer.ReasonOf(err) != composer.ReasonNoEntry {
		t.Fatalf("within cache_ttl of a revoke: %v, want no_entry", err)
	}
}

func TestCachedDeadlinePasses(t *testing.T) {
	clk := newClock()
	c, fe := newComposer(t, `cache_ttl = "10m"`, clk)
	short := root("T-1")
	short.Deadline = testNow.Add(3 * time.Second)
	fe.Add(entryOf(short, "agentid"))
	id := taskID("planner", "T-1")
	if _, err := c.Claims(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second)
	_, err := c.Claims(context.Background(), id)
	want := "composer: spiffe://example.org/agent/planner/task/T-1: expired: task deadline 2026-11-29T10:00:03Z has passed"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
	if n := fe.ListCalls.Load(); n != 2 {
		t.Fatalf("ListEntries called %d times, want 2", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	c, fe := newComposer(t, `cache_ttl = "0s"`, newClock())
	fe.Add(entryOf(root("T-1"), "agentid"))
	for range 3 {
		if _, err := c.Claims(context.Background(), taskID("planner", "T-1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := fe.ListCalls.Load(); n != 3 {
		t.Fatalf("ListEntries called %d times, want 3", n)
	}
}

func TestLookupFailed(t *testing.T) {
	t.Run("API error", func(t *testing.T) {
		c, fe := newComposer(t, "", newClock())
		fe.Add(entryOf(root("T-1"), "agentid"))
		fe.Fail(status.Error(codes.Unavailable, "datastore down"))
		_, err := c.Claims(context.Background(), taskID("planner", "T-1"))
		want := "composer: spiffe://example.org/agent/planner/task/T-1: lookup_failed: reading the entry from the server API: " +
			"rpc error: code = Unavailable desc = datastore down"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v, want %s", err, want)
		}
		fe.Fail(nil)
		if _, err := c.Claims(context.Background(), taskID("planner", "T-1")); err != nil {
			t.Fatalf("after recovery: %v", err)
		}
	})
	t.Run("no server on the socket", func(t *testing.T) {
		cfg := mustConfig(t, `server_api_socket = "/nonexistent/agentid/api.sock"`)
		conn, err := composer.Dial(cfg.Target())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := composer.New(cfg, composer.NewAPISource(entryClientOf(conn)), composer.WithClock(newClock().Now))
		start := time.Now()
		_, err = c.Claims(context.Background(), taskID("planner", "T-1"))
		if composer.ReasonOf(err) != composer.ReasonLookupFailed {
			t.Fatalf("error = %v, want lookup_failed", err)
		}
		if d := time.Since(start); d > composer.DefaultLookupTimeout+time.Second {
			t.Fatalf("lookup took %s", d)
		}
	})
	t.Run("caller gives up", func(t *testing.T) {
		c := composer.New(mustConfig(t, ""), blockingSource{}, composer.WithClock(newClock().Now))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Claims(ctx, taskID("planner", "T-1"))
		if composer.ReasonOf(err) != composer.ReasonLookupFailed || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want lookup_failed after the caller's deadline", err)
		}
	})
	t.Run("source panics", func(t *testing.T) {
		// The shared lookup runs in singleflight's goroutine, where a panic
		// would take the whole plugin down: it fails the lookup instead.
		c := composer.New(mustConfig(t, ""), panickingSource{}, composer.WithClock(newClock().Now))
		_, err := c.Claims(context.Background(), taskID("planner", "T-1"))
		if composer.ReasonOf(err) != composer.ReasonLookupFailed || !strings.Contains(err.Error(), "panic: entry source broke") {
			t.Fatalf("error = %v, want lookup_failed naming the panic", err)
		}
	})
	t.Run("lookup timeout", func(t *testing.T) {
		c := composer.New(mustConfig(t, ""), blockingSource{}, composer.WithLookupTimeout(20*time.Millisecond))
		_, err := c.Claims(context.Background(), taskID("planner", "T-1"))
		if composer.ReasonOf(err) != composer.ReasonLookupFailed || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want lookup_failed after the lookup timeout", err)
		}
	})
}

// panickingSource has a bug.
type panickingSource struct{}

func (panickingSource) EntriesByID(context.Context, spiffeid.ID) ([]*types.Entry, error) {
	panic("entry source broke")
}

// blockingSource answers when the lookup's context ends.
type blockingSource struct{}

func (blockingSource) EntriesByID(ctx context.Context, _ spiffeid.ID) ([]*types.Entry, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
