package registrar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDelegationFanOutBounded (review 16 #8): nothing bounded how many
// tasks one task could delegate — a compromised task filled SPIRE with
// entries until its deadline (1,000 of 1,000 children accepted), and every
// registrar's liveness lister reads every entry each interval. Now
// max_delegated bounds the live tasks below a task of the agent, at any
// depth: every ancestor's bound applies, so a child cannot multiply its
// root's; a revoked child frees its room.
func TestDelegationFanOutBounded(t *testing.T) {
	src, err := os.ReadFile(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(src), "  max_depth  = 3\n  delegators = [\"looper\"]", "  max_depth  = 3\n  max_delegated = 3\n  delegators = [\"looper\"]", 1)
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil)
	f.r.policy = p
	ctx := context.Background()
	planner := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	r1 := f.mustChild(t, planner, childRequest("researcher", "R1", "kb:read").withTTL(30*time.Minute))
	f.mustChild(t, planner, childRequest("researcher", "R2", "kb:read").withTTL(30*time.Minute))
	// a grandchild counts against the planner's bound too
	f.mustChild(t, r1, childRequest("summarizer", "S1", "kb:read").withTTL(20*time.Minute))
	_, err = f.r.CreateChild(ctx, planner.ID, childRequest("researcher", "R3", "kb:read").withTTL(30*time.Minute))
	var re *Error
	if !errors.As(err, &re) || re.Reason != ReasonDelegationLimit || !strings.Contains(err.Error(), "max_delegated 3") {
		t.Fatalf("4th task below the planner: %v, want %s naming max_delegated 3", err, ReasonDelegationLimit)
	}
	if _, err := f.r.CreateChild(ctx, r1.ID, childRequest("summarizer", "S2", "kb:read").withTTL(20*time.Minute)); !errors.As(err, &re) || re.Reason != ReasonDelegationLimit {
		t.Fatalf("a grandchild over the planner's bound: %v", err)
	}
	if n := len(f.fe.Entries()); n != 4 {
		t.Fatalf("%d entries, want 4 (the planner and its 3)", n)
	}
	// revoking a child frees its room (and its descendant's)
	if _, err := f.r.Revoke(ctx, r1.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		f.mustChild(t, planner, childRequest("researcher", fmt.Sprintf("R%d", 10+i), "kb:read").withTTL(30*time.Minute))
	}
	if r, ok := p.Rule("researcher"); !ok || r.MaxDelegated != DefaultMaxDelegated {
		t.Errorf("researcher's max_delegated = %d, want the default %d", r.MaxDelegated, DefaultMaxDelegated)
	}
}

func TestMaxDelegatedParse(t *testing.T) {
	for _, v := range []string{"-1", "\"x\"", "1.5"} {
		src := "agent \"a\" {\n  models = [\"*\"]\n  prompts = [\"*\"]\n  scopes = [\"*\"]\n  principals = [\"*\"]\n  max_delegated = " + v + "\n}\n"
		path := filepath.Join(t.TempDir(), "p.hcl")
		os.WriteFile(path, []byte(src), 0o644)
		_, err := LoadPolicy(path)
		if err == nil || !strings.Contains(err.Error(), "p.hcl:6:") {
			t.Errorf("max_delegated = %s: %v, want an error at p.hcl:6", v, err)
		}
	}
}
