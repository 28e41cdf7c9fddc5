package verifier_test

import (
	"errors"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
)

func TestLivenessView(t *testing.T) {
	c := claims() // chain: planner T-41
	c.Deadline = now.Add(time.Hour)
	task := verifier.NewPeer(taskID, &c)
	plain := verifier.NewPeer(plainID, nil)
	planner := "spiffe://example.org/agent/planner/task/T-41"
	v := &verifier.LivenessView{MaxStaleness: 5 * time.Second}

	reason := func(err error) string {
		var de *verifier.DenyError
		if errors.As(err, &de) {
			return de.Reason
		}
		if err != nil {
			return err.Error()
		}
		return ""
	}
	if got := reason(v.Check(&task, now)); got != verifier.ReasonLivenessUnknown {
		t.Fatalf("no view yet: %q", got)
	}
	if err := v.Check(&plain, now); err != nil {
		t.Fatalf("a non-task peer is never refused: %v", err)
	}
	v.Update(now, []string{taskID.String(), planner})
	if err := v.Check(&task, now.Add(time.Second)); err != nil {
		t.Fatalf("live: %v", err)
	}
	// The planner is revoked: its delegate is refused with it.
	v.Update(now.Add(time.Second), []string{taskID.String()})
	if got := reason(v.Check(&task, now.Add(2*time.Second))); got != verifier.ReasonRevoked {
		t.Fatalf("chain member revoked: %q", got)
	}
	// A replayed, older snapshot that still lists the planner is refused.
	if err := v.Update(now, []string{taskID.String(), planner}); err == nil {
		t.Fatal("an old snapshot was accepted")
	}
	if got := reason(v.Check(&task, now.Add(2*time.Second))); got != verifier.ReasonRevoked {
		t.Fatalf("after the replay: %q", got)
	}
	// A stale view fails closed, or open when chosen.
	if got := reason(v.Check(&task, now.Add(time.Minute))); got != verifier.ReasonLivenessUnknown {
		t.Fatalf("stale view: %q", got)
	}
	v.FailOpen = true
	if err := v.Check(&task, now.Add(time.Minute)); err != nil {
		t.Fatalf("stale view, fail-open: %v", err)
	}
	if v.Len() != 1 || !v.AsOf().Equal(now.Add(time.Second)) {
		t.Fatalf("view %d as of %v", v.Len(), v.AsOf())
	}
}

// A credential issued after the view was taken (its task may have been
// created after the listing began) is not judged absent until a view is
// taken well after its issue.
func TestLivenessViewYoungCredential(t *testing.T) {
	ca := newAttackEnv(t)
	v := &verifier.LivenessView{}
	wall := time.Now()
	v.Update(wall.Add(-time.Second), nil) // listed just before the task existed
	c := claims()
	c.Chain = nil
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	p, err := ca.v.Auth.Certificates(ca.ca.CreateX509SVID(taskID, ext(t, c), testca.WithLifetime(wall.Add(-10*time.Second), wall.Add(time.Hour))).Certificates) // SPIRE's 10 s backdate
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&p, wall); err != nil {
		t.Fatalf("young credential refused: %v", err)
	}
	v.Update(wall.Add(time.Minute), nil) // long after: absent means revoked
	if err := v.Check(&p, wall.Add(time.Minute)); err == nil {
		t.Fatal("absent task allowed by a view taken a minute after issue")
	}
}

// Deltas move the view by what changed; a task seen removed is refused even
// for a credential too young for the issue-time rule; a delta before any
// full listing, or not newer than the view, changes nothing.
func TestLivenessViewDeltas(t *testing.T) {
	ca := newAttackEnv(t)
	v := &verifier.LivenessView{}
	wall := time.Now()
	if err := v.Apply(wall, []string{taskID.String()}, nil); err == nil {
		t.Fatal("a delta before any full listing was applied")
	}
	planner := "spiffe://example.org/agent/planner/task/T-41"
	if err := v.Update(wall.Add(-2*time.Second), []string{planner}); err != nil {
		t.Fatal(err)
	}
	if err := v.Apply(wall.Add(-time.Second), []string{taskID.String()}, nil); err != nil {
		t.Fatal(err)
	}
	c := claims() // chain: the planner
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	p, err := ca.v.Auth.Certificates(ca.ca.CreateX509SVID(taskID, ext(t, c), testca.WithLifetime(wall.Add(-10*time.Second), wall.Add(time.Hour))).Certificates)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&p, wall); err != nil {
		t.Fatalf("live task with a live chain: %v", err)
	}
	if err := v.Apply(wall.Add(-time.Second), nil, []string{planner}); err == nil {
		t.Fatal("a delta as old as the view was applied")
	}
	if err := v.Apply(wall, nil, []string{planner}); err != nil {
		t.Fatal(err)
	}
	// The credential is seconds old, but the planner was seen removed.
	var de *verifier.DenyError
	if err := v.Check(&p, wall); !errors.As(err, &de) || de.Reason != verifier.ReasonRevoked {
		t.Fatalf("chain member seen removed: %v", err)
	}
	if v.Len() != 1 {
		t.Fatalf("view holds %d tasks, want 1", v.Len())
	}
	// A later full listing that still lacks the planner keeps refusing it.
	if err := v.Update(wall.Add(time.Second), []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&p, wall.Add(time.Second)); !errors.As(err, &de) || de.Reason != verifier.ReasonRevoked {
		t.Fatalf("after a full listing: %v", err)
	}
}

// A stale full listing — another registrar's, taken before the revoke,
// after a reconnect, its as_of clamped to this verifier's clock — does
// not bring a revoked task back: a credential of unknown issue time is
// refused while the removal is remembered (RememberRemoved), and accepted
// if the task is still listed once it is forgotten. Found by review: the
// listing made it live again. (With creation times in the feed, see
// TestLivenessStaleListingWithCreationTimes.)
func TestLivenessViewStaleListingDoesNotResurrect(t *testing.T) {
	task := verifier.NewPeer(taskID, func() *svid.Claims { c := claims(); c.Chain = nil; c.Deadline = now.Add(time.Hour); return &c }())
	v := &verifier.LivenessView{MaxStaleness: time.Hour, RememberRemoved: 30 * time.Second}
	if err := v.Update(now, []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	if err := v.Apply(now.Add(time.Second), nil, []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	var de *verifier.DenyError
	if err := v.Check(&task, now.Add(time.Second)); !errors.As(err, &de) || de.Reason != verifier.ReasonRevoked {
		t.Fatalf("removed: %v", err)
	}
	// The stale listing after a reconnect still names the task.
	if err := v.Update(now.Add(2*time.Second), []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&task, now.Add(2*time.Second)); !errors.As(err, &de) || de.Reason != verifier.ReasonRevoked {
		t.Fatalf("after a stale listing: %v, want revoked", err)
	}
	// A delta adding it again (the same stale registrar) does not either.
	if err := v.Apply(now.Add(3*time.Second), []string{taskID.String()}, nil); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&task, now.Add(3*time.Second)); !errors.As(err, &de) || de.Reason != verifier.ReasonRevoked {
		t.Fatalf("after a stale delta: %v, want revoked", err)
	}
	// Still listed once the removal is forgotten: re-created, live again.
	later := now.Add(time.Minute)
	if err := v.Apply(later, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(&task, later); err != nil {
		t.Fatalf("still listed after the removal was forgotten: %v", err)
	}
}
