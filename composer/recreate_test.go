package composer_test

import (
	"context"
	"testing"
	"time"
)

// TestRecreatedTaskGetsItsOwnClaims: task IDs are the caller's, so an
// operator may revoke a task and create the same ID again with other claims
// (another principal, other scopes). The verifiers take an SVID issued after
// the re-creation as the new incarnation's, so it must carry the new
// entry's claims. Before review 16 the composer cached claims by SPIFFE ID,
// and for cache_ttl after the re-creation the new incarnation's SVIDs
// carried the revoked incarnation's claims; now every signing reads the
// entry.
func TestRecreatedTaskGetsItsOwnClaims(t *testing.T) {
	clk := newClock()
	c, fe := newComposer(t, `cache_ttl = "5s"`, clk)
	old := root("T-1") // alice, kb:read + web:search
	ids := fe.Add(scopedEntryOf(old, "agentid"))
	id := taskID("planner", "T-1")
	if _, err := c.Claims(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// Revoked, and created again one second later for carol, kb:read only.
	deleteEntries(t, fe, ids...)
	clk.Add(time.Second)
	recreated := root("T-1")
	recreated.Principal, recreated.Scope = "spiffe://example.org/user/carol", []string{"kb:read"}
	fe.Add(scopedEntryOf(recreated, "agentid"))

	got, err := c.Claims(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Principal != recreated.Principal || len(got.Scope) != 1 {
		t.Errorf("SVID of the re-created task carries principal %s scopes %q; its entry says %s %q",
			got.Principal, got.Scope, recreated.Principal, recreated.Scope)
	}
}
