package registrar

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGet(t *testing.T) {
	f := newChain(t)
	r := f.tasks["R"]
	got, err := f.r.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Claims.Equal(r.Claims) || got.EntryID != r.EntryID || got.ParentID != testNode {
		t.Errorf("Get = %+v, want %+v", got, r)
	}
	id, err := f.r.TaskID("researcher", "R")
	if err != nil || id != r.ID {
		t.Errorf("TaskID = %s %v", id, err)
	}
	if _, err := f.r.TaskID("a/b", "R"); ReasonOf(err) != ReasonInvalidRequest {
		t.Errorf("TaskID err = %v", err)
	}

	missing := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/none")
	_, err = f.r.Get(context.Background(), missing)
	if ReasonOf(err) != ReasonNotFound || err.Error() != "registrar: not_found: no entry for "+missing.String() {
		t.Errorf("missing: err = %v", err)
	}
	if _, err := f.r.Get(context.Background(), spiffeid.RequireFromString("spiffe://example.org/workload")); ReasonOf(err) != ReasonInvalidRequest {
		t.Errorf("not a task ID: err = %v", err)
	}
}

func TestList(t *testing.T) {
	f := newChain(t)
	other := f.r.entry(spiffeid.RequireFromString("spiffe://example.org/workload/me"), spiffeid.RequireFromString(testNode), svid.Claims{}, nil, testNow)
	other.Selectors = []*types.Selector{{Type: "unix", Value: "uid:0"}}
	f.fe.Add(other)
	node2 := "spiffe://example.org/spire/agent/node2"
	req := childRequest("summarizer", "S2", "kb:read")
	req.TTL, req.ParentID, req.Model = 30*time.Minute, node2, "local/llama3"
	f.mustChild(t, f.tasks["P"], req)

	id := func(agent, task string) string { return "spiffe://example.org/agent/" + agent + "/task/" + task }
	tests := []struct {
		name   string
		filter Filter
		want   []string
	}{
		{"all", Filter{}, []string{id("looper", "L"), id("planner", "B"), id("planner", "P"), id("researcher", "R"), id("shallow", "H"), id("summarizer", "S"), id("summarizer", "S2")}},
		{"agent", Filter{Agent: "summarizer"}, []string{id("summarizer", "S"), id("summarizer", "S2")}},
		{"principal", Filter{Principal: "spiffe://example.org/user/bob"}, []string{id("planner", "B")}},
		{"model", Filter{Model: "local/llama3"}, []string{id("summarizer", "S2")}},
		{"direct children", Filter{ParentTask: id("planner", "P")}, []string{id("looper", "L"), id("researcher", "R"), id("summarizer", "S2")}},
		{"children of a child", Filter{ParentTask: id("researcher", "R")}, []string{id("summarizer", "S")}},
		{"agent and parent", Filter{Agent: "summarizer", ParentTask: id("planner", "P")}, []string{id("summarizer", "S2")}},
		{"node", Filter{ParentID: node2}, []string{id("summarizer", "S2")}},
		{"nothing", Filter{Agent: "nobody"}, []string{}},
	}
	for _, pageSize := range []int32{0, 2} {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := *f.r
				r.cfg.pageSize = pageSize
				got, err := r.List(context.Background(), tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				if ids := taskIDs(got.Tasks); !slices.Equal(ids, tt.want) {
					t.Errorf("page size %d:\n got %q\nwant %q", pageSize, ids, tt.want)
				}
			})
		}
	}
	if _, err := f.r.List(context.Background(), Filter{ParentTask: id("planner", "none")}); ReasonOf(err) != ReasonParentNotFound {
		t.Errorf("unknown parent: err = %v", err)
	}
	if _, err := f.r.List(context.Background(), Filter{ParentTask: "nope"}); ReasonOf(err) != ReasonInvalidRequest {
		t.Errorf("bad parent: err = %v", err)
	}
	if _, err := f.r.List(context.Background(), Filter{ParentID: "nope"}); ReasonOf(err) != ReasonInvalidRequest {
		t.Errorf("bad node: err = %v", err)
	}
}

func TestListPages(t *testing.T) {
	f := newFixture(t, []Option{WithPageSize(3)})
	for _, task := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		f.mustCreate(t, plannerRequest(task))
	}
	calls := f.fe.ListCalls.Load()
	got, err := f.r.List(context.Background(), Filter{Agent: "planner"})
	if err != nil || len(got.Tasks) != 7 {
		t.Fatalf("%d tasks, %v", len(got.Tasks), err)
	}
	if n := f.fe.ListCalls.Load() - calls; n != 3 {
		t.Errorf("%d ListEntries calls for 7 entries in pages of 3", n)
	}
}

func TestRevokeCascade(t *testing.T) {
	f := newChain(t)
	// Siblings of R (L and S3) and its parent must survive R's revocation.
	sib := f.mustChild(t, f.tasks["P"], childRequest("summarizer", "S3", "kb:read").withTTL(time.Hour))
	removed, err := f.r.Revoke(context.Background(), f.tasks["R"].ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{f.tasks["R"].ID.String(), f.tasks["S"].ID.String()}
	if got := taskIDs(removed); !slices.Equal(got, want) {
		t.Errorf("removed %q, want %q", got, want)
	}
	if removed[1].EntryID != f.tasks["S"].EntryID || !removed[1].Claims.Equal(f.tasks["S"].Claims) {
		t.Errorf("removed[1] = %+v", removed[1])
	}
	left, _ := f.r.List(context.Background(), Filter{})
	wantLeft := []string{f.tasks["L"].ID.String(), f.tasks["B"].ID.String(), f.tasks["P"].ID.String(), f.tasks["H"].ID.String(), sib.ID.String()}
	if got := taskIDs(left.Tasks); !slices.Equal(got, wantLeft) {
		t.Errorf("left %q, want %q", got, wantLeft)
	}

	removed, err = f.r.Revoke(context.Background(), f.tasks["P"].ID)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{f.tasks["P"].ID.String(), f.tasks["L"].ID.String(), sib.ID.String()}
	if got := taskIDs(removed); !slices.Equal(got, want) {
		t.Errorf("removed %q, want %q", got, want)
	}
	if n := len(f.fe.Entries()); n != 2 {
		t.Errorf("%d entries left, want B and H", n)
	}

	_, err = f.r.Revoke(context.Background(), f.tasks["P"].ID)
	if ReasonOf(err) != ReasonNotFound || !errors.Is(err, &Error{Reason: ReasonNotFound}) {
		t.Errorf("second revoke: err = %v", err)
	}
}

func (r Request) withTTL(d time.Duration) Request { r.TTL = d; return r }

func TestRevokeDeepChain(t *testing.T) {
	f := newFixture(t, nil)
	root := f.mustCreate(t, plannerRequest("P").withTTL(time.Hour))
	r := f.mustChild(t, root, childRequest("researcher", "R", "kb:read"))
	s := f.mustChild(t, r, childRequest("summarizer", "S", "kb:read"))
	// Revoking the root removes children and grandchildren alike.
	removed, err := f.r.Revoke(context.Background(), root.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := taskIDs(removed), []string{root.ID.String(), r.ID.String(), s.ID.String()}; !slices.Equal(got, want) {
		t.Errorf("removed %q, want %q", got, want)
	}
	if n := len(f.fe.Entries()); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

func TestRevokeErrors(t *testing.T) {
	f := newChain(t)
	if _, err := f.r.Revoke(context.Background(), spiffeid.RequireFromString("spiffe://example.org/x")); ReasonOf(err) != ReasonInvalidRequest {
		t.Errorf("not a task: err = %v", err)
	}
	f.fe.Fail(status.Error(codes.PermissionDenied, "no"))
	if _, err := f.r.Revoke(context.Background(), f.tasks["P"].ID); status.Code(err) != codes.PermissionDenied {
		t.Errorf("SPIRE down: err = %v", err)
	}
}

// TestRevokeBrokenEntry: a task entry that does not decode is still
// revoked, with its descendants at any depth.
func TestRevokeBrokenEntry(t *testing.T) {
	f := newChain(t)
	id, _ := svid.TaskID(testTD, "planner", "X")
	e := f.r.entry(id, spiffeid.RequireFromString(testNode), svid.Claims{}, nil, testNow)
	e.Selectors = []*types.Selector{{Type: "agentid", Value: "task:X"}}
	f.fe.Add(e)
	child := f.r.entry(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/Y"), spiffeid.RequireFromString(testNode), svid.Claims{}, nil, testNow)
	child.Selectors = []*types.Selector{{Type: "agentid", Value: "delegator:3:" + id.String()}}
	f.fe.Add(child)
	removed, err := f.r.Revoke(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got := taskIDs(removed); !slices.Equal(got, []string{id.String(), "spiffe://example.org/agent/researcher/task/Y"}) {
		t.Errorf("removed %q", got)
	}
	if removed[0].Claims.V != 0 {
		t.Errorf("broken entry reported with claims %+v", removed[0].Claims)
	}
}

// TestListMalformedEntry: one task-shaped entry that does not decode (here
// a task selector only, as a hand-made or half-migrated entry has) must not
// make the whole list fail: the valid tasks are listed and the broken
// entry is reported apart, with why.
func TestListMalformedEntry(t *testing.T) {
	f := newChain(t)
	id, _ := svid.TaskID(testTD, "planner", "X")
	e := f.r.entry(id, spiffeid.RequireFromString(testNode), svid.Claims{}, nil, testNow)
	e.Selectors = []*types.Selector{{Type: "agentid", Value: "task:X"}}
	bad := f.fe.Add(e)[0]
	got, err := f.r.List(context.Background(), Filter{})
	if err != nil {
		t.Fatalf("List failed on one malformed entry: %v", err)
	}
	if n := len(got.Tasks); n != 6 {
		t.Errorf("%d tasks listed, want the 6 valid ones", n)
	}
	if len(got.Invalid) != 1 || got.Invalid[0].EntryID != bad || got.Invalid[0].ID != id || got.Invalid[0].Err == nil {
		t.Fatalf("invalid = %+v, want entry %s of %s with its error", got.Invalid, bad, id)
	}
	if msg := got.Invalid[0].Err.Error(); !strings.Contains(msg, "selector") {
		t.Errorf("error %q does not say what is wrong", msg)
	}
}

// Tasks past their deadline whose entries SPIRE has not pruned yet are not
// listed (SPIRE prunes expired entries on its own schedule).
func TestListSkipsExpired(t *testing.T) {
	now := testNow
	f := newFixture(t, []Option{WithClock(func() time.Time { return now })})
	f.mustCreate(t, plannerRequest("T-1")) // TTL 3h
	short := plannerRequest("T-2")
	short.TTL = time.Minute
	f.mustCreate(t, short)
	now = now.Add(2 * time.Minute) // T-2 is past its deadline, its entry still in SPIRE
	got, err := f.r.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := taskIDs(got.Tasks); len(ids) != 1 || !strings.HasSuffix(ids[0], "/task/T-1") {
		t.Fatalf("listed %q, want only the live T-1", ids)
	}
}
