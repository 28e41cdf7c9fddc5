package registrar

import (
	"context"
	"errors"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// chainFixture holds a planner root P (alice, kb:read kb:write, 90 min), a
// planner root B (bob), a shallow root H, a researcher R under P, a looper L under P and a
// summarizer S under R.
type chainFixture struct {
	*fixture
	tasks map[string]Task
}

func newChain(t *testing.T) *chainFixture {
	t.Helper()
	f := &chainFixture{fixture: newFixture(t, nil), tasks: map[string]Task{}}
	p := plannerRequest("P")
	p.Scope, p.TTL = []string{"kb:read", "kb:write"}, 90*time.Minute
	f.tasks["P"] = f.mustCreate(t, p)
	b := plannerRequest("B")
	b.Principal = "spiffe://example.org/user/bob"
	f.tasks["B"] = f.mustCreate(t, b)
	h := plannerRequest("H")
	h.Agent, h.TTL = "shallow", time.Hour
	f.tasks["H"] = f.mustCreate(t, h)
	f.tasks["R"] = f.mustChild(t, f.tasks["P"], childRequest("researcher", "R", "kb:read"))
	f.tasks["L"] = f.mustChild(t, f.tasks["P"], childRequest("looper", "L", "kb:read"))
	s := childRequest("summarizer", "S", "kb:read")
	s.TTL = 50 * time.Minute
	f.tasks["S"] = f.mustChild(t, f.tasks["R"], s)
	return f
}

func TestCreateChild(t *testing.T) {
	f := newChain(t)
	r, p := f.tasks["R"], f.tasks["P"]
	want := svid.Claims{V: 1, Agent: "researcher", Task: "R", Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read"}, Principal: alice, Chain: []string{p.ID.String()},
		Deadline: testNow.Add(90 * time.Minute)}
	if !r.Claims.Equal(want) || r.ParentID != testNode {
		t.Errorf("child = %+v", r)
	}
	s := f.tasks["S"]
	if !slices.Equal(s.Claims.Chain, []string{p.ID.String(), r.ID.String()}) {
		t.Errorf("grandchild chain %q", s.Claims.Chain)
	}
	var sels []string
	var hint string
	for _, e := range f.fe.Entries() {
		if e.Id == s.EntryID {
			sels, hint = selectorSet(e.Selectors), e.Hint
		}
	}
	// The task-scoped layout: every selector is the grandchild's own, and
	// the hint names the root of its chain (how a revoke finds it).
	for _, w := range []string{
		"agentid:task:S",
		"agentid:task:S:delegator:0:spiffe://example.org/agent/planner/task/P",
		"agentid:task:S:delegator:1:spiffe://example.org/agent/researcher/task/R",
		"agentid:task:S:depth:2",
	} {
		if !slices.Contains(sels, w) {
			t.Errorf("grandchild selectors %q lack %s", sels, w)
		}
	}
	for _, sel := range sels {
		if !strings.HasPrefix(sel, "agentid:task:S:") && sel != "agentid:task:S" {
			t.Errorf("selector %s is not scoped to the task", sel)
		}
	}
	if hint != p.ID.String() {
		t.Errorf("hint %q, want the chain's root %s", hint, p.ID)
	}
}

// TestOldLayoutEntries: entries of the v1 layout (written by the registrar
// before the task-scoped one, so live for at most one max_ttl after an
// upgrade) are still read, delegated from, listed and revoked with their
// descendants, v1 and v2 alike.
func TestOldLayoutEntries(t *testing.T) {
	f := newFixture(t, nil)
	node := spiffeid.RequireFromString(testNode)
	old := func(c svid.Claims) Task {
		id, _ := svid.TaskID(testTD, c.Agent, c.Task)
		e := f.r.entry(id, node, c, nil, testNow)
		e.Hint, e.Selectors = "", nil
		for _, v := range c.Selectors() {
			e.Selectors = append(e.Selectors, &types.Selector{Type: "agentid", Value: v})
		}
		e.Id = f.fe.Add(e)[0]
		task, err := f.r.task(e)
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	root := old(svid.Claims{V: 1, Agent: "planner", Task: "P", Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read"}, Principal: alice, Deadline: testNow.Add(time.Hour)})
	oldChild := old(svid.Claims{V: 1, Agent: "researcher", Task: "R", Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read"}, Principal: alice, Chain: []string{root.ID.String()}, Deadline: testNow.Add(time.Hour)})
	// A new child of each, in the new layout.
	newChild := f.mustChild(t, oldChild, childRequest("summarizer", "S", "kb:read"))
	newChild2 := f.mustChild(t, root, childRequest("looper", "L", "kb:read"))
	if got, err := f.r.Get(context.Background(), oldChild.ID); err != nil || !got.Claims.Equal(oldChild.Claims) {
		t.Fatalf("Get of a v1 entry: %+v, %v", got, err)
	}
	l, err := f.r.List(context.Background(), Filter{ParentTask: root.ID.String()})
	if err != nil || !slices.Equal(taskIDs(l.Tasks), []string{newChild2.ID.String(), oldChild.ID.String()}) {
		t.Errorf("children of the v1 root: %q, %v", taskIDs(l.Tasks), err)
	}
	removed, err := f.r.Revoke(context.Background(), oldChild.ID)
	if err != nil || !slices.Equal(taskIDs(removed), []string{oldChild.ID.String(), newChild.ID.String()}) {
		t.Errorf("revoke of the v1 child removed %q, %v", taskIDs(removed), err)
	}
	removed, err = f.r.Revoke(context.Background(), root.ID)
	if err != nil || !slices.Equal(taskIDs(removed), []string{root.ID.String(), newChild2.ID.String()}) {
		t.Errorf("revoke of the v1 root removed %q, %v", taskIDs(removed), err)
	}
	if n := len(f.fe.Entries()); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

func TestCreateChildOverrides(t *testing.T) {
	f := newChain(t)
	req := childRequest("researcher", "R2", "kb:read")
	req.Principal = alice // the same principal is fine
	req.TTL = 30 * time.Minute
	req.ParentID = "spiffe://example.org/spire/agent/node2"
	c := f.mustChild(t, f.tasks["P"], req)
	if !c.Claims.Deadline.Equal(testNow.Add(30*time.Minute)) || c.ParentID != req.ParentID {
		t.Errorf("child = %+v", c)
	}
}

// TestCreateChildKeepsOperatorSelectors: a delegated child carries the
// operator-set selectors of its parent (unix:uid:…, k8s:…), down the whole
// lineage; the delegating agent cannot drop or change them. It may pin the
// child's executable, which only narrows what matches.
func TestCreateChildKeepsOperatorSelectors(t *testing.T) {
	f := newFixture(t, nil)
	root := plannerRequest("P")
	root.Selectors = []string{"unix:uid:1001", "k8s:ns:agents"}
	root.Scope, root.TTL = []string{"kb:read"}, 90*time.Minute
	p := f.mustCreate(t, root)
	r := f.mustChild(t, p, childRequest("researcher", "R", "kb:read"))
	sreq := childRequest("summarizer", "S", "kb:read")
	sreq.TTL = 50 * time.Minute
	s := f.mustChild(t, r, sreq)
	for _, c := range []Task{r, s} {
		if !slices.Equal(c.Selectors, root.Selectors) {
			t.Errorf("%s selectors = %q, want the root's %q", c.ID, c.Selectors, root.Selectors)
		}
	}
	for _, e := range f.fe.Entries() {
		if got := selectorSet(e.Selectors); !slices.Contains(got, "unix:uid:1001") || !slices.Contains(got, "k8s:ns:agents") {
			t.Errorf("entry %s selectors %q lack the operator's", idString(e.SpiffeId), got)
		}
	}
	same := childRequest("researcher", "R2", "kb:read")
	same.Selectors = []string{"k8s:ns:agents", "unix:uid:1001"} // the same set: fine
	f.mustChild(t, p, same)
	for name, sels := range map[string][]string{
		"another uid": {"unix:uid:0"},
		"one dropped": {"unix:uid:1001"},
		"one added":   {"unix:uid:1001", "k8s:ns:agents", "k8s:sa:admin"},
	} {
		req := childRequest("researcher", "R-"+strings.ReplaceAll(name, " ", "-"), "kb:read")
		req.Selectors = sels
		_, err := f.r.CreateChild(context.Background(), p.ID, req)
		var re *Error
		if !errors.As(err, &re) || re.Reason != ReasonInvalidRequest || !strings.Contains(err.Error(), "only an operator") {
			t.Errorf("%s: CreateChild = %v; want refused (only an operator sets them)", name, err)
		}
	}
	pinned := childRequest("researcher", "R3", "kb:read")
	pinned.ExeSHA256 = strings.Repeat("ab", 32)
	c := f.mustChild(t, p, pinned)
	if c.ExeSHA256 != pinned.ExeSHA256 || !slices.Equal(c.Selectors, root.Selectors) {
		t.Errorf("pinned child = %+v", c)
	}
}

func TestCreateChildRefusals(t *testing.T) {
	tests := []struct {
		name   string
		parent string // key in the chain fixture, or a SPIFFE ID
		req    Request
		edit   func(*Request)
		reason Reason
		rule   string
		msg    string
	}{
		{name: "scope escalation", parent: "P", req: childRequest("researcher", "X", "web:search"), reason: ReasonScopeEscalation,
			msg: `registrar: scope_escalation: scope "web:search" is not held by the parent spiffe://example.org/agent/planner/task/P (holds ["kb:read" "kb:write"])`},
		{name: "scope not allowed", parent: "P", req: childRequest("researcher", "X", "kb:write"), reason: ReasonScopeNotAllowed, rule: "policy.hcl:12"},
		{name: "deadline extension", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.Deadline = testNow.Add(91 * time.Minute) }, reason: ReasonDeadlineExtension,
			msg: `registrar: deadline_extension: deadline 2026-11-29T11:31:00Z is after the parent's 2026-11-29T11:30:00Z`},
		{name: "ttl exceeded by the inherited deadline", parent: "P", req: childRequest("summarizer", "X"), reason: ReasonTTLExceeded, rule: "policy.hcl:22"},
		{name: "ttl too short", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.TTL = time.Second }, reason: ReasonTTLTooShort},
		{name: "depth over the child's max_depth", parent: "R", req: childRequest("shallow", "X"), reason: ReasonDepthExceeded, rule: "policy.hcl:30",
			msg: `registrar: depth_exceeded: depth 2 exceeds max_depth 1 of agent "shallow" (rule policy.hcl:30)`},
		{name: "depth over a chain member's max_depth", parent: "S", req: childRequest("shallow", "X"), reason: ReasonDepthExceeded, rule: "policy.hcl:12",
			msg: `registrar: depth_exceeded: depth 3 exceeds max_depth 2 of agent "researcher" (chain[1]) (rule policy.hcl:12)`},
		{name: "agent cycle", parent: "L", req: childRequest("planner", "X"), reason: ReasonAgentCycle,
			msg: `registrar: agent_cycle: agent "planner" appears twice in the chain ["spiffe://example.org/agent/planner/task/P" "spiffe://example.org/agent/looper/task/L"] + planner/X`},
		{name: "agent cycle with the parent", parent: "H", req: childRequest("shallow", "H2"), reason: ReasonAgentCycle},
		{name: "self-delegation needs a delegators entry", parent: "P", req: childRequest("planner", "P2"), reason: ReasonDelegatorNotAllowed, rule: "policy.hcl:2"},
		{name: "delegator not allowed", parent: "L", req: childRequest("researcher", "X"), reason: ReasonDelegatorNotAllowed, rule: "policy.hcl:12",
			msg: `registrar: delegator_not_allowed: agent "researcher" does not list "looper" among its delegators ["planner"] (rule policy.hcl:12)`},
		{name: "principal mismatch", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.Principal = "spiffe://example.org/user/carol" }, reason: ReasonPrincipalMismatch},
		{name: "inherited principal not allowed", parent: "B", req: childRequest("researcher", "X"), reason: ReasonPrincipalNotAllowed, rule: "policy.hcl:12"},
		{name: "model not allowed", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.Model = "anthropic/claude" }, reason: ReasonModelNotAllowed, rule: "policy.hcl:12"},
		{name: "prompt not allowed", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.Prompt = svid.PromptDigest(nil) }, reason: ReasonPromptNotAllowed, rule: "policy.hcl:12"},
		{name: "unknown agent", parent: "P", req: childRequest("ghost", "X"), reason: ReasonUnknownAgent},
		{name: "parent not found", parent: "spiffe://example.org/agent/planner/task/nope", req: childRequest("researcher", "X"), reason: ReasonParentNotFound,
			msg: `registrar: parent_not_found: no entry for spiffe://example.org/agent/planner/task/nope`},
		{name: "conflict", parent: "P", req: childRequest("researcher", "R"), reason: ReasonConflict},
		{name: "invalid scope", parent: "P", req: childRequest("researcher", "X", "kb read"), reason: ReasonInvalidRequest},
		{name: "invalid parent ID", parent: "P", req: childRequest("researcher", "X"),
			edit: func(r *Request) { r.ParentID = "node" }, reason: ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newChain(t)
			before := len(f.fe.Entries())
			parent, ok := f.tasks[tt.parent]
			if !ok {
				parent.ID = spiffeid.RequireFromString(tt.parent)
			}
			req := tt.req
			if tt.edit != nil {
				tt.edit(&req)
			}
			_, err := f.r.CreateChild(context.Background(), parent.ID, req)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Rule != tt.rule {
				t.Fatalf("err = %v, want reason %s rule %q", err, tt.reason, tt.rule)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("message\n got %s\nwant %s", err, tt.msg)
			}
			if n := len(f.fe.Entries()); n != before {
				t.Errorf("%d entries after a refusal, want %d", n, before)
			}
		})
	}
}

// TestCreateChildParentFromEntry shows that the parent's claims come from
// its entry: a hand-made parent entry whose chain names an agent without a
// policy block, an expired parent and a broken one are refused.
func TestCreateChildParentFromEntry(t *testing.T) {
	f := newFixture(t, nil)
	add := func(task string, chain []string, deadline time.Time) spiffeid.ID {
		id, _ := svid.TaskID(testTD, "planner", task)
		c := svid.Claims{V: 1, Agent: "planner", Task: task, Model: "openai/gpt-4o", Prompt: testPrompt,
			Scope: []string{"kb:read"}, Principal: alice, Chain: chain, Deadline: deadline}
		f.fe.Add(f.r.entry(id, spiffeid.RequireFromString(testNode), c, nil, testNow))
		return id
	}
	ghost := add("G", []string{"spiffe://example.org/agent/ghost/task/g"}, testNow.Add(time.Hour))
	expired := add("E", nil, testNow)
	broken, _ := svid.TaskID(testTD, "planner", "Z")
	e := f.r.entry(broken, spiffeid.RequireFromString(testNode), svid.Claims{}, nil, testNow)
	e.Selectors = e.Selectors[:1]
	f.fe.Add(e)
	dup := add("D", nil, testNow.Add(time.Hour))
	add("D", nil, testNow.Add(2*time.Hour))

	tests := []struct {
		parent spiffeid.ID
		reason Reason
		msg    string
	}{
		{ghost, ReasonUnknownAgent, `registrar: unknown_agent: no policy block for agent "ghost" of the chain (chain[0])`},
		{expired, ReasonParentInvalid, `registrar: parent_invalid: parent spiffe://example.org/agent/planner/task/E expired at 2026-11-29T10:00:00Z`},
		{broken, ReasonParentInvalid, ""},
		{dup, ReasonParentInvalid, `registrar: parent_invalid: 2 entries for spiffe://example.org/agent/planner/task/D`},
	}
	for _, tt := range tests {
		_, err := f.r.CreateChild(context.Background(), tt.parent, childRequest("researcher", "X", "kb:read"))
		if ReasonOf(err) != tt.reason || tt.msg != "" && err.Error() != tt.msg {
			t.Errorf("%s: err = %v, want %s %s", tt.parent, err, tt.reason, tt.msg)
		}
	}
}

// TestCreateChildParentRevokedMeanwhile: a revoke that lands between the
// parent's read and the child's write must not leave an orphan.
func TestCreateChildParentRevokedMeanwhile(t *testing.T) {
	var f *fixture
	var parent Task
	f = newFixture(t, nil, grpc.WithUnaryInterceptor(raceInterceptor(func() {
		if parent.EntryID != "" {
			if _, err := f.r.Revoke(context.Background(), parent.ID); err != nil {
				t.Error(err)
			}
		}
	})))
	req := plannerRequest("P")
	req.TTL = time.Hour
	parent = f.mustCreate(t, req)
	_, err := f.r.CreateChild(context.Background(), parent.ID, childRequest("researcher", "R", "kb:read"))
	if ReasonOf(err) != ReasonParentNotFound {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.fe.Entries()); n != 0 {
		t.Errorf("%d entries left", n)
	}
}
