package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestParentRecreatesRevokedChild: the operator revokes a delegated child R
// (its agent misbehaves), not its parent P. P — the same compromise, or an
// honest planner retrying its delegation with the same task ID as
// docs/registrar.md recommends for retries — delegates R again. Before
// review 16 the registrar wrote an entry with exactly the selectors of the
// revoked one, so the revoked R process, still running with its manifest,
// matched it and got SVIDs of the new incarnation, which verifiers accept
// (internal/devstack.TestRevokedProcessNotRevivedByRecreation on the real
// SPIRE). Now the new entry has another incarnation selector.
func TestParentRecreatesRevokedChild(t *testing.T) {
	f := newFixture(t, nil)
	p := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	req := childRequest("researcher", "R", "kb:read").withTTL(30 * time.Minute)
	r := f.mustChild(t, p, req)
	before := selectorStrings(f.fe.Entries()[1].GetSelectors())
	if _, err := f.r.Revoke(context.Background(), r.ID); err != nil {
		t.Fatal(err)
	}
	again, err := f.r.CreateChild(context.Background(), p.ID, req)
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	after := selectorStrings(f.fe.Entries()[1].GetSelectors())
	if fmt.Sprint(before) == fmt.Sprint(after) {
		t.Errorf("the parent re-created the revoked child %s with the same selectors %q: the revoked process's manifest matches it again", again.ID, after)
	}
}
