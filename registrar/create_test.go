package registrar

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func selectorSet(sels []*types.Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.Type + ":" + s.Value
	}
	slices.Sort(out)
	return out
}

func TestCreateWritesOneEntry(t *testing.T) {
	f := newFixture(t, nil)
	req := plannerRequest("T-1")
	req.Selectors = []string{"unix:uid:1001", "k8s:ns:agents"}
	task := f.mustCreate(t, req)

	entries := f.fe.Entries()
	if len(entries) != 1 {
		t.Fatalf("%d entries", len(entries))
	}
	e := entries[0]
	if got := idString(e.SpiffeId); got != "spiffe://example.org/agent/planner/task/T-1" {
		t.Errorf("SPIFFE ID %s", got)
	}
	if got := idString(e.ParentId); got != testNode {
		t.Errorf("parent ID %s", got)
	}
	if want := testNow.Add(3 * time.Hour).Unix(); e.ExpiresAt != want {
		t.Errorf("expires_at %d, want %d", e.ExpiresAt, want)
	}
	if e.X509SvidTtl != 300 || e.JwtSvidTtl != 300 {
		t.Errorf("TTLs x509 %d jwt %d, want 300 300", e.X509SvidTtl, e.JwtSvidTtl)
	}
	// The task-scoped layout: every selector of the task type is the
	// task's own; the hint is the chain's root, the task itself.
	want := []string{
		"agentid:task:T-1", "agentid:task:T-1:agent:planner", "agentid:task:T-1:depth:0", "agentid:task:T-1:model:openai/gpt-4o",
		"agentid:task:T-1:principal:" + alice, "agentid:task:T-1:prompt:" + testPrompt,
		"agentid:task:T-1:scope:kb:read", "agentid:task:T-1:scope:web:search",
		"k8s:ns:agents", "unix:uid:1001",
	}
	// And one incarnation: 128 random bits, new for every entry.
	got := selectorSet(e.Selectors)
	inc := slices.IndexFunc(got, func(s string) bool { return strings.HasPrefix(s, "agentid:task:T-1:incarnation:") })
	if inc < 0 || !svid.ValidIncarnation(strings.TrimPrefix(got[inc], "agentid:task:T-1:incarnation:")) {
		t.Errorf("no incarnation selector in %q", got)
	} else {
		got = slices.Delete(got, inc, inc+1)
	}
	if !slices.Equal(got, want) {
		t.Errorf("selectors\n got %q\nwant %q", got, want)
	}
	if e.Hint != "spiffe://example.org/agent/planner/task/T-1" {
		t.Errorf("hint %q", e.Hint)
	}

	wantClaims := svid.Claims{V: 1, Agent: "planner", Task: "T-1", Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read", "web:search"}, Principal: alice, Deadline: testNow.Add(3 * time.Hour)}
	if !task.Claims.Equal(wantClaims) || task.EntryID != e.Id || task.ParentID != testNode ||
		!slices.Equal(task.Selectors, []string{"unix:uid:1001", "k8s:ns:agents"}) ||
		task.X509SVIDTTL != 5*time.Minute || task.JWTSVIDTTL != 5*time.Minute {
		t.Errorf("task = %+v", task)
	}
}

func TestCreateClampsTTLs(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration
		opts      []Option
		x509, jwt int32
	}{
		{"defaults", 3 * time.Hour, nil, 300, 300},
		{"deadline before both", 2 * time.Minute, nil, 120, 120},
		{"configured maxima", 3 * time.Hour, []Option{WithMaxSVIDTTL(10*time.Minute, time.Minute)}, 600, 60},
		{"deadline before the configured x509 max", 40 * time.Minute, []Option{WithMaxSVIDTTL(time.Hour, 5*time.Minute)}, 2400, 300},
		{"configured minimum", 5 * time.Second, []Option{WithMinTTL(time.Second)}, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts)
			req := plannerRequest("T-1")
			req.TTL = tt.ttl
			f.mustCreate(t, req)
			e := f.fe.Entries()[0]
			if e.X509SvidTtl != tt.x509 || e.JwtSvidTtl != tt.jwt {
				t.Errorf("TTLs x509 %d jwt %d, want %d %d", e.X509SvidTtl, e.JwtSvidTtl, tt.x509, tt.jwt)
			}
		})
	}
}

func TestCreateDeadline(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Time
		ttl      time.Duration
		want     time.Time
	}{
		{"default is the agent's max_ttl", time.Time{}, 0, testNow.Add(4 * time.Hour)},
		{"ttl", time.Time{}, 90 * time.Minute, testNow.Add(90 * time.Minute)},
		{"deadline truncated to seconds", testNow.Add(time.Hour + 999*time.Millisecond), 0, testNow.Add(time.Hour)},
		{"deadline in another zone", testNow.Add(time.Hour).In(time.FixedZone("X", 3600)), 0, testNow.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			req := plannerRequest("T-1")
			req.TTL, req.Deadline = tt.ttl, tt.deadline
			task := f.mustCreate(t, req)
			if !task.Claims.Deadline.Equal(tt.want) || task.Claims.Deadline.Location() != time.UTC {
				t.Errorf("deadline %s, want %s", task.Claims.Deadline, tt.want)
			}
			if got := f.fe.Entries()[0].ExpiresAt; got != tt.want.Unix() {
				t.Errorf("expires_at %d, want %d", got, tt.want.Unix())
			}
		})
	}
}

func TestCreateGeneratesTaskID(t *testing.T) {
	f := newFixture(t, []Option{WithRandom(bytes.NewReader(make([]byte, 13)))})
	task := f.mustCreate(t, plannerRequest(""))
	if task.Claims.Task != "t-aaaaaaaaaaaaaaaaaaaa" || task.ID.String() != "spiffe://example.org/agent/planner/task/t-aaaaaaaaaaaaaaaaaaaa" {
		t.Errorf("task %s %s", task.Claims.Task, task.ID)
	}
	f = newFixture(t, nil)
	task = f.mustCreate(t, plannerRequest(""))
	if !regexp.MustCompile(`^t-[a-z2-7]{20}$`).MatchString(task.Claims.Task) {
		t.Errorf("generated task ID %q", task.Claims.Task)
	}
	f = newFixture(t, []Option{WithRandom(bytes.NewReader(nil))})
	if _, err := f.r.Create(context.Background(), plannerRequest("")); err == nil || err.Error() != "registrar: task ID: EOF" {
		t.Errorf("err = %v", err)
	}
}

func TestCreateConflict(t *testing.T) {
	f := newFixture(t, nil)
	first := f.mustCreate(t, plannerRequest("T-1"))
	req := plannerRequest("T-1")
	req.Scope = []string{"kb:read"} // different selectors: SPIRE would accept it
	_, err := f.r.Create(context.Background(), req)
	want := "registrar: conflict: task spiffe://example.org/agent/planner/task/T-1 exists (entry " + first.EntryID + ")"
	if err == nil || err.Error() != want || !errors.Is(err, &Error{Reason: ReasonConflict}) {
		t.Errorf("err = %v, want %s", err, want)
	}
	if n := len(f.fe.Entries()); n != 1 {
		t.Errorf("%d entries after the conflict", n)
	}
}

// raceInterceptor creates a competing entry just before the registrar's
// BatchCreateEntry, as another registrar would.
func raceInterceptor(add func()) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == "/spire.api.server.entry.v1.Entry/BatchCreateEntry" {
			add()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func TestCreateConflictRace(t *testing.T) {
	tests := []struct {
		name     string
		parent   string
		deadline time.Duration
		same     bool // the racing entry is the one this request writes: the same task
	}{
		{"same entry but its incarnation: the oldest stays, the same task", testNode, 3 * time.Hour, true},
		{"same selectors, other deadline: the oldest stays, a conflict", testNode, 2 * time.Hour, false},
		{"other parent ID: both accepted, oldest stays", "spiffe://example.org/spire/agent/other", 3 * time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fixture
			f = newFixture(t, nil, grpc.WithUnaryInterceptor(raceInterceptor(func() {
				req := plannerRequest("T-1")
				c := svid.Claims{V: 1, Agent: "planner", Task: "T-1", Model: req.Model, Prompt: req.Prompt,
					Scope: req.Scope, Principal: alice, Deadline: testNow.Add(tt.deadline)}
				id, _ := svid.TaskID(testTD, "planner", "T-1")
				node, _ := parseID(tt.parent)
				f.fe.Add(f.r.entry(id, node, c, nil, testNow))
			})))
			got, err := f.r.Create(context.Background(), plannerRequest("T-1"))
			if tt.same {
				if err != nil || got.EntryID != f.fe.Entries()[0].Id {
					t.Fatalf("got %+v, %v; want the racing entry", got, err)
				}
			} else if ReasonOf(err) != ReasonConflict {
				t.Fatalf("err = %v, want a conflict", err)
			}
			entries := f.fe.Entries()
			if len(entries) != 1 || idString(entries[0].ParentId) != tt.parent {
				t.Errorf("entries after the race: %v", entries)
			}
		})
	}
}

func TestCreateRefusals(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Request)
		reason Reason
		rule   string
		msg    string // whole message when set
	}{
		{"unknown agent", func(r *Request) { r.Agent = "ghost" }, ReasonUnknownAgent, "",
			`registrar: unknown_agent: no policy block for agent "ghost"`},
		{"model", func(r *Request) { r.Model = "anthropic/claude" }, ReasonModelNotAllowed, "policy.hcl:2",
			`registrar: model_not_allowed: model "anthropic/claude" matches none of ["openai/gpt-4o*"] (rule policy.hcl:2)`},
		{"prompt", func(r *Request) { r.Agent, r.Prompt = "researcher", svid.PromptDigest([]byte("other")) }, ReasonPromptNotAllowed, "policy.hcl:12", ""},
		{"scope", func(r *Request) { r.Scope = []string{"kb:read", "admin"} }, ReasonScopeNotAllowed, "policy.hcl:2",
			`registrar: scope_not_allowed: scope "admin" matches none of ["kb:read" "kb:write" "web:*"] (rule policy.hcl:2)`},
		{"principal", func(r *Request) { r.Principal = "spiffe://evil.org/user/mallory" }, ReasonPrincipalNotAllowed, "policy.hcl:2", ""},
		{"ttl over max_ttl", func(r *Request) { r.TTL = 4*time.Hour + time.Second }, ReasonTTLExceeded, "policy.hcl:2",
			`registrar: ttl_exceeded: deadline 2026-11-29T14:00:01Z is 4h0m1s away, more than max_ttl 4h0m0s (rule policy.hcl:2)`},
		{"deadline too close", func(r *Request) { r.TTL = 29 * time.Second }, ReasonTTLTooShort, "",
			`registrar: ttl_too_short: deadline 2026-11-29T10:00:29Z is 29s away, less than the minimum 30s`},
		{"deadline passed", func(r *Request) { r.TTL, r.Deadline = 0, testNow.Add(-time.Hour) }, ReasonTTLTooShort, "", ""},
		{"deadline and ttl", func(r *Request) { r.Deadline = testNow.Add(time.Hour) }, ReasonInvalidRequest, "",
			`registrar: invalid_request: give a deadline or a TTL, not both`},
		{"negative ttl", func(r *Request) { r.TTL = -time.Hour }, ReasonInvalidRequest, "", ""},
		{"bad agent name", func(r *Request) { r.Agent = "a/b" }, ReasonInvalidRequest, "", ""},
		{"bad task name", func(r *Request) { r.Task = "x y" }, ReasonInvalidRequest, "",
			`registrar: invalid_request: svid: claims rejected: invalid field: task "x y" is not [A-Za-z0-9._-]{1,128}`},
		{"bad model", func(r *Request) { r.Model = "gpt 4" }, ReasonInvalidRequest, "", ""},
		{"bad prompt", func(r *Request) { r.Prompt = "md5:abc" }, ReasonInvalidRequest, "", ""},
		{"bad scope", func(r *Request) { r.Scope = []string{"kb read"} }, ReasonInvalidRequest, "", ""},
		{"repeated scope", func(r *Request) { r.Scope = []string{"kb:read", "kb:read"} }, ReasonInvalidRequest, "", ""},
		{"missing principal", func(r *Request) { r.Principal = "" }, ReasonInvalidRequest, "", ""},
		{"task selector type", func(r *Request) { r.Selectors = []string{"agentid:scope:admin"} }, ReasonInvalidRequest, "",
			`registrar: invalid_request: selector "agentid:scope:admin" has the task selector type "agentid", which the registrar alone writes`},
		{"malformed selector", func(r *Request) { r.Selectors = []string{"unix"} }, ReasonInvalidRequest, "", ""},
		{"repeated selector", func(r *Request) { r.Selectors = []string{"unix:uid:1", "unix:uid:1"} }, ReasonInvalidRequest, "", ""},
		{"no parent ID", func(r *Request) { r.ParentID = "" }, ReasonInvalidRequest, "", ""},
		{"bad parent ID", func(r *Request) { r.ParentID = "node1" }, ReasonInvalidRequest, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			req := plannerRequest("T-1")
			tt.edit(&req)
			_, err := f.r.Create(context.Background(), req)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason || e.Rule != tt.rule {
				t.Fatalf("err = %v, want reason %s rule %q", err, tt.reason, tt.rule)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("message\n got %s\nwant %s", err, tt.msg)
			}
			if n := len(f.fe.Entries()); n != 0 {
				t.Errorf("%d entries after a refusal", n)
			}
		})
	}
}

func TestCreateWithoutPolicy(t *testing.T) {
	f := newFixture(t, nil)
	r := *f.r
	r.policy = nil
	if _, err := r.Create(context.Background(), plannerRequest("T-1")); !errors.Is(err, errNoPolicy) {
		t.Errorf("err = %v", err)
	}
	r.policy = (*Policy)(nil)
	if _, err := r.CreateChild(context.Background(), testTD.ID(), plannerRequest("T-1")); !errors.Is(err, errNoPolicy) {
		t.Errorf("err = %v", err)
	}
}

func TestCreateSPIREErrors(t *testing.T) {
	f := newFixture(t, nil)
	f.fe.Fail(status.Error(codes.Unavailable, "down"))
	_, err := f.r.Create(context.Background(), plannerRequest("T-1"))
	if status.Code(err) != codes.Unavailable || ReasonOf(err) != 0 ||
		err.Error() != "registrar: list entries: rpc error: code = Unavailable desc = down" {
		t.Errorf("err = %v", err)
	}
}

func TestCreateSelectorType(t *testing.T) {
	f := newFixture(t, []Option{WithSelectorType("aid")})
	req := plannerRequest("T-1")
	req.Selectors = []string{"agentid:x:y"} // not the task type here
	task := f.mustCreate(t, req)
	got := selectorSet(f.fe.Entries()[0].Selectors)
	if !slices.Contains(got, "aid:task:T-1") || !slices.Contains(got, "agentid:x:y") || task.Claims.Task != "T-1" {
		t.Errorf("selectors %q task %+v", got, task)
	}
}

// TestCreateExePin: a request naming an executable digest gets the task
// selector task:<id>:exe:sha256:<hex> (also accepted as exe:sha256:<hex> as an extra selector of the task
// type, the gRPC API's way), which the attestor emits from the real
// executable; it reads back as Task.ExeSHA256.
func TestCreateExePin(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	for name, mod := range map[string]func(*Request){
		"field":    func(r *Request) { r.ExeSHA256 = sum },
		"selector": func(r *Request) { r.Selectors = []string{"agentid:exe:sha256:" + sum, "unix:uid:1001"} },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			req := plannerRequest("T-1")
			mod(&req)
			task := f.mustCreate(t, req)
			if got := selectorSet(f.fe.Entries()[0].Selectors); !slices.Contains(got, "agentid:task:T-1:exe:sha256:"+sum) {
				t.Errorf("entry selectors %q lack the pin", got)
			}
			if task.ExeSHA256 != sum || slices.ContainsFunc(task.Selectors, func(s string) bool { return strings.Contains(s, "exe:") }) {
				t.Errorf("task = %+v", task)
			}
			got, err := f.r.Get(context.Background(), task.ID)
			if err != nil || got.ExeSHA256 != sum {
				t.Errorf("Get = %+v, %v", got, err)
			}
		})
	}
	f := newFixture(t, nil)
	for name, mod := range map[string]func(*Request){
		"bad digest":   func(r *Request) { r.ExeSHA256 = "abc" },
		"bad selector": func(r *Request) { r.Selectors = []string{"agentid:exe:sha256:ABC"} },
		"two pins": func(r *Request) {
			r.ExeSHA256 = sum
			r.Selectors = []string{"agentid:exe:sha256:" + strings.Repeat("1f", 32)}
		},
	} {
		req := plannerRequest("T-2")
		mod(&req)
		if _, err := f.r.Create(context.Background(), req); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestCreateIdempotent: a retry of the same request with the same task ID
// (the caller's first call timed out or was cancelled after SPIRE wrote
// the entry, or the registrar crashed before answering) returns the task
// already created instead of a conflict; a different request for the same
// task ID is still a conflict.
func TestCreateIdempotent(t *testing.T) {
	now := testNow
	f := newFixture(t, []Option{WithClock(func() time.Time { return now })})
	first := f.mustCreate(t, plannerRequest("T-1")) // TTL 3h
	now = now.Add(7 * time.Second)                  // the retry comes later: now+TTL moved on
	again, err := f.r.Create(context.Background(), plannerRequest("T-1"))
	if err != nil || again.EntryID != first.EntryID || !again.Claims.Equal(first.Claims) {
		t.Fatalf("retry with TTL: %+v, %v; want the first task %s", again, err, first.EntryID)
	}
	explicit := plannerRequest("T-2")
	explicit.TTL, explicit.Deadline = 0, testNow.Add(time.Hour)
	e1 := f.mustCreate(t, explicit)
	if e2, err := f.r.Create(context.Background(), explicit); err != nil || e2.EntryID != e1.EntryID {
		t.Errorf("retry with a deadline: %+v, %v", e2, err)
	}
	for name, edit := range map[string]func(*Request){
		"other scope":     func(r *Request) { r.Scope = []string{"kb:read"} },
		"other deadline":  func(r *Request) { r.TTL, r.Deadline = 0, testNow.Add(2*time.Hour) },
		"other node":      func(r *Request) { r.ParentID = "spiffe://example.org/spire/agent/other" },
		"extra selector":  func(r *Request) { r.Selectors = []string{"unix:uid:1001"} },
		"other principal": func(r *Request) { r.Principal = "spiffe://example.org/user/bob" },
	} {
		req := plannerRequest("T-1")
		edit(&req)
		if _, err := f.r.Create(context.Background(), req); ReasonOf(err) != ReasonConflict {
			t.Errorf("%s: err = %v, want a conflict", name, err)
		}
	}
	// A retry long after (beyond the retry window) with a TTL names a
	// deadline the entry does not have: a conflict.
	now = testNow.Add(RetryWindow + time.Minute)
	if _, err := f.r.Create(context.Background(), plannerRequest("T-1")); ReasonOf(err) != ReasonConflict {
		t.Errorf("late retry: err = %v, want a conflict", err)
	}
	if n := len(f.fe.Entries()); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
}

// TestCreateChildIdempotent: the same for a delegation.
func TestCreateChildIdempotent(t *testing.T) {
	f := newChain(t)
	req := childRequest("researcher", "R", "kb:read")
	again, err := f.r.CreateChild(context.Background(), f.tasks["P"].ID, req)
	if err != nil || again.EntryID != f.tasks["R"].EntryID {
		t.Fatalf("retried delegation: %+v, %v; want %s", again, err, f.tasks["R"].EntryID)
	}
	req.TTL = 10 * time.Minute // another deadline than the parent's
	if _, err := f.r.CreateChild(context.Background(), f.tasks["P"].ID, req); ReasonOf(err) != ReasonConflict {
		t.Errorf("other deadline: err = %v, want a conflict", err)
	}
}
