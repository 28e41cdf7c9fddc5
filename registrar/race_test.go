package registrar

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// hookInterceptor runs hook around the registrar's calls of the Entry API
// method (e.g. "BatchDeleteEntry"): before the call when before is set,
// after it otherwise. The hook is not run for calls it makes itself.
func hookInterceptor(method string, before bool, hook func()) grpc.UnaryClientInterceptor {
	var inHook atomic.Bool
	full := "/spire.api.server.entry.v1.Entry/" + method
	run := func() {
		if inHook.CompareAndSwap(false, true) {
			defer inHook.Store(false)
			hook()
		}
	}
	return func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if m != full || inHook.Load() {
			return invoker(ctx, m, req, reply, cc, opts...)
		}
		if before {
			run()
		}
		err := invoker(ctx, m, req, reply, cc, opts...)
		if !before {
			run()
		}
		return err
	}
}

// raceChain is a root P with a child R, on a fake whose registrar runs
// hook around method.
func raceChain(t *testing.T, method string, before bool, hook func(f *fixture, p, r Task)) (f *fixture, p, r Task) {
	t.Helper()
	ready := false
	f = newFixture(t, nil, grpc.WithUnaryInterceptor(hookInterceptor(method, before, func() {
		if ready {
			hook(f, p, r)
		}
	})))
	p = f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	r = f.mustChild(t, p, childRequest("researcher", "R", "kb:read"))
	ready = true
	return f, p, r
}

// orphans lists the task entries whose chain names id.
func (f *fixture) orphans(t *testing.T, id spiffeid.ID) []string {
	t.Helper()
	var out []string
	for _, e := range f.fe.Entries() {
		for _, s := range e.GetSelectors() {
			if strings.HasPrefix(s.GetValue(), "delegator:") && strings.HasSuffix(s.GetValue(), ":"+id.String()) {
				out = append(out, idString(e.GetSpiffeId()))
			}
		}
	}
	return out
}

// TestCreateChildAncestorRevokedMeanwhile: after the grandchild G (chain
// P, R) is written, P's entry goes — SPIRE's BatchDeleteEntry removes a
// revoke's entries one at a time, P first, so a re-check can see R still
// there and P gone. G must notice that P is gone, delete itself and fail.
func TestCreateChildAncestorRevokedMeanwhile(t *testing.T) {
	deleted := false
	f, _, r := raceChain(t, "BatchCreateEntry", false, func(f *fixture, p, _ Task) {
		if !deleted {
			deleted = true
			f.fe.Delete(p.EntryID)
		}
	})
	_, err := f.r.CreateChild(context.Background(), r.ID, childRequest("summarizer", "G", "kb:read").withTTL(30*time.Minute))
	want := "registrar: parent_not_found: chain member spiffe://example.org/agent/planner/task/P of spiffe://example.org/agent/summarizer/task/G was removed while it was being created"
	if ReasonOf(err) != ReasonParentNotFound || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if got := f.orphans(t, spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/R")); len(got) != 0 {
		t.Errorf("children of R left: %q", got)
	}
	if n := len(f.fe.Entries()); n != 1 {
		t.Errorf("%d entries left, want R alone", n)
	}
}

// TestRevokeChildCreatedMeanwhile: a child of R whose creation completes
// (write and re-check) after Revoke(P) listed the descendants but before it
// deleted them is not in that list; Revoke must list again and remove it.
func TestRevokeChildCreatedMeanwhile(t *testing.T) {
	var g Task
	f, p, r := raceChain(t, "BatchDeleteEntry", true, func(f *fixture, _, r Task) {
		if g.EntryID == "" {
			g = f.mustChild(t, r, childRequest("summarizer", "G", "kb:read").withTTL(30*time.Minute))
		}
	})
	removed, err := f.r.Revoke(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := taskIDs(removed), []string{p.ID.String(), r.ID.String(), g.ID.String()}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("removed %q, want %q", got, want)
	}
	if got := f.orphans(t, p.ID); len(got) != 0 {
		t.Errorf("entries whose chain names the revoked P: %q", got)
	}
}

// TestRevokeDoesNotConverge: descendants that keep appearing (here added
// behind the registrar's back before every delete) end the revoke after a
// bounded number of rounds with an error that says so.
func TestRevokeDoesNotConverge(t *testing.T) {
	n := 0
	f, p, _ := raceChain(t, "BatchDeleteEntry", true, func(f *fixture, p, _ Task) {
		n++
		id, _ := svid.TaskID(testTD, "researcher", "X"+strings.Repeat("x", n))
		c := svid.Claims{V: 1, Agent: "researcher", Task: "X" + strings.Repeat("x", n), Model: "openai/gpt-4o", Prompt: testPrompt,
			Scope: []string{"kb:read"}, Principal: alice, Chain: []string{p.ID.String()}, Deadline: testNow.Add(time.Hour)}
		f.fe.Add(f.r.entry(id, spiffeid.RequireFromString(testNode), c, nil, testNow))
	})
	removed, err := f.r.Revoke(context.Background(), p.ID)
	want := "registrar: revoke spiffe://example.org/agent/planner/task/P: descendants still appear after 16 rounds of list and delete (created concurrently?); revoke again"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if len(removed) != 2+15 || n != 16 {
		t.Errorf("%d removed in %d rounds", len(removed), n)
	}
}

// TestRevokeAgain: revoking a task revoked already, or one that never
// existed, is ReasonNotFound with a message that says so, and removes
// nothing else. Descendants left behind (the task's entry deleted directly
// in SPIRE, or a revoke cut short) are removed by revoking the task again,
// and reported with the error.
func TestRevokeAgain(t *testing.T) {
	f := newChain(t)
	ctx := context.Background()
	p := f.tasks["P"]
	f.fe.Delete(p.EntryID) // as `spire-server entry delete` would
	removed, err := f.r.Revoke(ctx, p.ID)
	want := "registrar: not_found: no entry for " + p.ID.String() + ": unknown task, or revoked already; removed 3 descendant entries that still named it"
	if ReasonOf(err) != ReasonNotFound || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if got, w := taskIDs(removed), []string{f.tasks["L"].ID.String(), f.tasks["R"].ID.String(), f.tasks["S"].ID.String()}; strings.Join(got, " ") != strings.Join(w, " ") {
		t.Errorf("removed %q, want %q", got, w)
	}
	before := f.fe.Entries()
	for _, id := range []spiffeid.ID{p.ID, spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/never")} {
		removed, err = f.r.Revoke(ctx, id)
		want = "registrar: not_found: no entry for " + id.String() + ": unknown task, or revoked already"
		if ReasonOf(err) != ReasonNotFound || err == nil || err.Error() != want || len(removed) != 0 {
			t.Errorf("revoke %s: %d removed, err = %v\nwant %s", id, len(removed), err, want)
		}
	}
	if after := f.fe.Entries(); len(after) != len(before) || len(after) != 2 {
		t.Errorf("%d entries after revoking unknown tasks, want B and H", len(after))
	}
}
