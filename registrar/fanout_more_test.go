package registrar

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
)

func fanoutPolicy(t *testing.T, n string) *Policy {
	t.Helper()
	src, err := os.ReadFile(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(src), "  max_depth  = 3\n  delegators = [\"looper\"]", "  max_depth  = 3\n  max_delegated = "+n+"\n  delegators = [\"looper\"]", 1)
	path := filepath.Join(t.TempDir(), "policy.hcl")
	if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Rule("planner"); r.MaxDelegated != 1 {
		t.Fatalf("planner max_delegated %d", r.MaxDelegated)
	}
	return p
}

// Review 20: a child whose deadline has passed is not live (query.go
// leaves such entries out: SPIRE prunes them on its own schedule), yet
// delegationRoom counts it: the planner, whose only child expired, is
// refused a new one until SPIRE prunes the entry.
func TestMaxDelegatedSkipsExpiredChildren(t *testing.T) {
	var mu sync.Mutex
	now := testNow
	f := newFixture(t, []Option{WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })})
	f.r.policy = fanoutPolicy(t, "1")
	planner := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	f.mustChild(t, planner, childRequest("researcher", "R1", "kb:read").withTTL(time.Minute))
	mu.Lock()
	now = now.Add(2 * time.Minute) // R1 expired; SPIRE has not pruned its entry yet
	mu.Unlock()
	if _, err := f.r.CreateChild(context.Background(), planner.ID, childRequest("researcher", "R2", "kb:read").withTTL(time.Minute)); err != nil {
		t.Fatalf("the planner has no live task below it (R1 expired), yet: %v", err)
	}
}

// Review 20: entries written before the hint existed (an upgrade: the
// registrar's own descendants() still looks for them by selector) carry no
// hint; delegationRoom lists only ByHint, so such a child is not counted
// and the planner gets max_delegated more.
func TestMaxDelegatedCountsUnhintedChildren(t *testing.T) {
	f := newFixture(t, nil)
	f.r.policy = fanoutPolicy(t, "1")
	planner := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	r1 := f.mustChild(t, planner, childRequest("researcher", "R1", "kb:read").withTTL(30*time.Minute))
	for _, e := range f.fe.Entries() {
		if e.GetId() == r1.EntryID {
			f.fe.Delete(e.GetId())
			// as written by the registrar before hints: the v1 layout
			// (hints came with the task-scoped layout, da980ef)
			e.Hint = ""
			e.Selectors = nil
			for _, v := range r1.Claims.Selectors() {
				e.Selectors = append(e.Selectors, &types.Selector{Type: "agentid", Value: v})
			}
			f.fe.Add(e)
		}
	}
	_, err := f.r.CreateChild(context.Background(), planner.ID, childRequest("researcher", "R2", "kb:read").withTTL(30*time.Minute))
	var re *Error
	if !errors.As(err, &re) || re.Reason != ReasonDelegationLimit {
		t.Fatalf("a 2nd live task below the planner (max_delegated 1; R1 written without hint): %v, want %s", err, ReasonDelegationLimit)
	}
}

// Review 20: an idempotent retry (same task ID, same request: CreateChild
// returns the existing task) is refused delegation_limit when the parent
// is at its bound — the retried child itself is counted against it.
func TestMaxDelegatedRetryAtLimit(t *testing.T) {
	f := newFixture(t, nil)
	f.r.policy = fanoutPolicy(t, "1")
	planner := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	req := childRequest("researcher", "R1", "kb:read").withTTL(30 * time.Minute)
	first := f.mustChild(t, planner, req)
	again, err := f.r.CreateChild(context.Background(), planner.ID, req)
	if err != nil {
		t.Fatalf("the retry of R1 (created already, same request): %v, want R1 (%s) again", err, first.EntryID)
	}
	if again.EntryID != first.EntryID {
		t.Errorf("retry: entry %s, want %s", again.EntryID, first.EntryID)
	}
}

// Review 20: two delegations racing for the last room: both pass the
// first count (neither written yet), both write, both count the other's
// entry on the recount, and both are taken back: with room for one,
// neither child is created.
func TestMaxDelegatedRaceKeepsOne(t *testing.T) {
	var armed atomic.Bool
	before, after := make(chan struct{}, 2), make(chan struct{}, 2)
	gate1, gate2 := make(chan struct{}), make(chan struct{})
	barrier := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := req.(*entryv1.BatchCreateEntryRequest); ok && armed.Load() {
			before <- struct{}{}
			<-gate1 // both past their first count before either writes
			err := invoker(ctx, method, req, reply, cc, opts...)
			after <- struct{}{}
			<-gate2 // both written before either recounts
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	f := newFixture(t, nil, grpc.WithUnaryInterceptor(barrier))
	f.r.policy = fanoutPolicy(t, "1")
	planner := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	armed.Store(true)
	errs := make(chan error, 2)
	for _, name := range []string{"R1", "R2"} {
		go func() {
			_, err := f.r.CreateChild(context.Background(), planner.ID, childRequest("researcher", name, "kb:read").withTTL(30*time.Minute))
			errs <- err
		}()
	}
	wait := func(c chan struct{}) {
		select {
		case <-c:
		case err := <-errs:
			t.Fatalf("a racing delegation ended before the barrier: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("barrier not reached")
		}
	}
	wait(before)
	wait(before)
	close(gate1)
	wait(after)
	wait(after)
	close(gate2)
	ok := 0
	for range 2 {
		if err := <-errs; err == nil {
			ok++
		} else {
			t.Log(err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 2 racing children created with room for 1, want 1 (entries now: %d)", ok, len(f.fe.Entries()))
	}
}
