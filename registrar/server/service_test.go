package server

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || st.Message() != msg {
		t.Errorf("got %v\nwant code %s, message %q", err, code, msg)
	}
}

func TestOperatorSocket(t *testing.T) {
	r, fe := newRegistrar(t, loadPolicy(t))
	op, path := serveOperator(t, New(r, WithDefaultParentID(testNode)))
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}

	p := createPlanner(t, op, "P", "kb:read", "web:search")
	wantClaims := `{"v":1,"agent":"planner","task":"P","model":"openai/gpt-4o","prompt":"` + testPrompt +
		`","scope":["kb:read","web:search"],"principal":"` + alice + `","chain":[],"deadline":"2026-11-29T13:00:00Z"}`
	if p.SpiffeId != plannerP || p.EntryId != "entry-1" || p.ParentId != testNode || p.ClaimsJson != wantClaims ||
		p.ExpiresAt != testNow.Add(3*time.Hour).Unix() {
		t.Errorf("created %v", p)
	}
	child, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, ParentTask: plannerP, Deadline: "2026-11-29T11:00:00Z",
		Selectors: []string{"unix:uid:1001"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := svid.Parse([]byte(child.ClaimsJson))
	if err != nil || !slices.Equal(c.Chain, []string{plannerP}) || c.Principal != alice ||
		child.ParentId != testNode || !slices.Equal(child.Selectors, []string{"unix:uid:1001"}) {
		t.Errorf("child %v: %+v %v", child, c, err)
	}

	got, err := op.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: child.SpiffeId})
	if err != nil || got.ClaimsJson != child.ClaimsJson || got.EntryId != child.EntryId {
		t.Errorf("get: %v %v", got, err)
	}
	list, err := op.ListTasks(ctxT(t), &registrarv1.ListTasksRequest{ParentTask: plannerP})
	if err != nil || len(list.Tasks) != 1 || list.Tasks[0].SpiffeId != child.SpiffeId {
		t.Errorf("list children: %v %v", list, err)
	}
	list, err = op.ListTasks(ctxT(t), &registrarv1.ListTasksRequest{Principal: alice})
	if err != nil || len(list.Tasks) != 2 {
		t.Errorf("list by principal: %v %v", list, err)
	}

	rev, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP})
	if err != nil || len(rev.Removed) != 2 || rev.Removed[0].SpiffeId != plannerP || rev.Removed[1].SpiffeId != child.SpiffeId {
		t.Fatalf("revoke: %v %v", rev, err)
	}
	if n := len(fe.Entries()); n != 0 {
		t.Errorf("%d entries left", n)
	}
	_, err = op.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: plannerP})
	wantStatus(t, err, codes.NotFound, "not_found: no entry for "+plannerP)
	if ReasonOf(err) != registrar.ReasonNotFound {
		t.Errorf("ReasonOf = %v", ReasonOf(err))
	}
}

func TestOperatorRefusals(t *testing.T) {
	r, _ := newRegistrar(t, loadPolicy(t))
	op, _ := serveOperator(t, New(r))
	base := registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o", Prompt: testPrompt,
		Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600, ParentId: testNode}
	tests := []struct {
		name   string
		edit   func(*registrarv1.CreateTaskRequest)
		code   codes.Code
		msg    string
		reason registrar.Reason
	}{
		{"scope not allowed", func(r *registrarv1.CreateTaskRequest) { r.Scope = []string{"admin"} }, codes.PermissionDenied,
			`scope_not_allowed: scope "admin" matches none of ["kb:read" "kb:write" "web:*"] (rule policy.hcl:2)`, registrar.ReasonScopeNotAllowed},
		{"no parent id and no default", func(r *registrarv1.CreateTaskRequest) { r.ParentId = "" }, codes.InvalidArgument,
			"invalid_request: parent ID (the SPIRE agent's SPIFFE ID) required", registrar.ReasonInvalidRequest},
		{"bad deadline", func(r *registrarv1.CreateTaskRequest) { r.TtlSeconds, r.Deadline = 0, "tomorrow" }, codes.InvalidArgument,
			`invalid_request: deadline "tomorrow" is not RFC 3339: parsing time "tomorrow" as "2006-01-02T15:04:05Z07:00": cannot parse "tomorrow" as "2006"`, 0},
		{"unknown parent task", func(r *registrarv1.CreateTaskRequest) {
			r.Agent, r.ParentTask, r.Principal = "researcher", "spiffe://example.org/agent/planner/task/nope", ""
		}, codes.NotFound, "parent_not_found: no entry for spiffe://example.org/agent/planner/task/nope", registrar.ReasonParentNotFound},
		{"huge ttl", func(r *registrarv1.CreateTaskRequest) { r.TtlSeconds = 1 << 62 }, codes.InvalidArgument,
			"invalid_request: ttl_seconds 4611686018427387904 out of range", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := registrarv1.CreateTaskRequest{Agent: base.Agent, Task: base.Task, Model: base.Model, Prompt: base.Prompt,
				Scope: base.Scope, Principal: base.Principal, TtlSeconds: base.TtlSeconds, ParentId: base.ParentId}
			tt.edit(&req)
			_, err := op.CreateTask(ctxT(t), &req)
			wantStatus(t, err, tt.code, tt.msg)
			if ReasonOf(err) != tt.reason {
				t.Errorf("ReasonOf = %v, want %v", ReasonOf(err), tt.reason)
			}
		})
	}
	_, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: "not an id"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("revoke bad ID: %v", err)
	}
	_, err = op.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher"})
	wantStatus(t, err, codes.Unauthenticated,
		"no caller credential: call over SPIFFE mTLS with the task's X.509-SVID, or send a JWT-SVID bearer")
}

func TestDelegateOverMTLS(t *testing.T) {
	ca := testca.New(t, testTD, time.Now())
	r, fe := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	createPlanner(t, op, "P")
	asTask := func(id string) registrarv1.RegistrarClient {
		return agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString(id)), ca.X509Bundle())
	}
	planner := asTask(plannerP)

	got, err := planner.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	wantClaims := `{"v":1,"agent":"researcher","task":"R","model":"openai/gpt-4o","prompt":"` + testPrompt +
		`","scope":["kb:read"],"principal":"` + alice + `","chain":["` + plannerP + `"],"deadline":"2026-11-29T11:00:00Z"}`
	if got.SpiffeId != "spiffe://example.org/agent/researcher/task/R" || got.ClaimsJson != wantClaims || got.ParentId != testNode {
		t.Errorf("delegated %v", got)
	}

	delegate := func(c registrarv1.RegistrarClient, scope ...string) error {
		_, err := c.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher",
			Model: "openai/gpt-4o", Prompt: testPrompt, Scope: scope, TtlSeconds: 1800})
		return err
	}
	err = delegate(planner, "web:search")
	wantStatus(t, err, codes.PermissionDenied,
		`scope_escalation: scope "web:search" is not held by the parent `+plannerP+` (holds ["kb:read"])`)
	if ReasonOf(err) != registrar.ReasonScopeEscalation {
		t.Errorf("ReasonOf = %v", ReasonOf(err))
	}
	// The child runs on the parent's node: naming it is fine, another is not.
	_, err = planner.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R2",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800, ParentId: testNode})
	if err != nil {
		t.Errorf("delegation naming the parent's own node: %v", err)
	}
	_, err = planner.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R3",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800, ParentId: "spiffe://example.org/agent/other-node"})
	wantStatus(t, err, codes.PermissionDenied, "node_not_allowed: a delegated task runs under its parent's node "+testNode+", not spiffe://example.org/agent/other-node")
	err = delegate(asTask("spiffe://example.org/agent/planner/task/ghost"), "kb:read")
	wantStatus(t, err, codes.NotFound, "parent_not_found: no entry for spiffe://example.org/agent/planner/task/ghost")
	err = delegate(asTask("spiffe://example.org/workload/web"), "kb:read")
	wantStatus(t, err, codes.PermissionDenied, "caller spiffe://example.org/workload/web is not an agent task: only tasks delegate")

	// The operator RPCs are closed to agents, whoever they are.
	for name, call := range map[string]func() error{
		"create": func() error {
			_, err := planner.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Model: "openai/gpt-4o",
				Prompt: testPrompt, Principal: alice, ParentId: testNode})
			return err
		},
		"get": func() error {
			_, err := planner.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: plannerP})
			return err
		},
		"list": func() error { _, err := planner.ListTasks(ctxT(t), &registrarv1.ListTasksRequest{}); return err },
		"revoke": func() error {
			_, err := planner.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, call(), codes.PermissionDenied, "operators only: use the local socket")
		})
	}

	// A client of another CA does not get through the handshake.
	other := testca.New(t, testTD, time.Now())
	err = delegate(agentClient(t, addr, other.CreateX509SVID(spiffeid.RequireFromString(plannerP)), ca.X509Bundle()), "kb:read")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("foreign CA: %v", err)
	}
	// Nor does one of a federated trust domain whose bundle the server
	// holds: only members of the registrar's trust domain connect.
	fca := testca.New(t, spiffeid.RequireTrustDomainFromString("other.org"), time.Now())
	fedAddr := serveAgent(t, svc, ca, x509bundle.NewSet(ca.X509Bundle(), fca.X509Bundle()))
	foreign := agentClient(t, fedAddr, fca.CreateX509SVID(spiffeid.RequireFromString("spiffe://other.org/agent/planner/task/P")), ca.X509Bundle())
	if err := delegate(foreign, "kb:read"); status.Code(err) != codes.Unavailable {
		t.Errorf("foreign trust domain: %v", err)
	}
	if err := delegate(agentClient(t, fedAddr, ca.CreateX509SVID(spiffeid.RequireFromString(plannerP)), ca.X509Bundle()), "kb:read"); err != nil {
		t.Errorf("own trust domain on the federated server: %v", err)
	}
	if n := len(fe.Entries()); n != 4 {
		t.Errorf("%d entries, want P, R, R2 and one more child", n)
	}
}

// TestListTasksPages: ListTasks pages (page_size, page_token,
// next_page_token) so that a large fleet never needs one reply over gRPC's
// 4 MB limit, and a task-shaped entry that does not decode is reported in
// invalid without failing the call or hiding the others.
func TestListTasksPages(t *testing.T) {
	r, fe := newRegistrar(t, loadPolicy(t))
	op, _ := serveOperator(t, New(r, WithDefaultParentID(testNode)))
	for _, task := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		createPlanner(t, op, task, "kb:read")
	}
	broken := fe.Add(&types.Entry{SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/planner/task/X"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/agent/join_token/node1"},
		Selectors: []*types.Selector{{Type: "agentid", Value: "task:X"}}, ExpiresAt: testNow.Add(time.Hour).Unix()})[0]

	var ids []string
	var invalid []*registrarv1.InvalidTaskEntry
	req := &registrarv1.ListTasksRequest{PageSize: 3}
	pages := 0
	for {
		resp, err := op.ListTasks(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(resp.Tasks)+len(resp.Invalid) > 3 {
			t.Errorf("page %d holds %d entries, page size 3", pages, len(resp.Tasks)+len(resp.Invalid))
		}
		for _, task := range resp.Tasks {
			ids = append(ids, task.SpiffeId)
		}
		invalid = append(invalid, resp.Invalid...)
		if resp.NextPageToken == "" {
			break
		}
		req.PageToken = resp.NextPageToken
	}
	if len(ids) != 7 || pages < 3 {
		t.Errorf("%d tasks in %d pages: %q", len(ids), pages, ids)
	}
	if len(invalid) != 1 || invalid[0].EntryId != broken || invalid[0].SpiffeId != "spiffe://example.org/agent/planner/task/X" || invalid[0].Error == "" {
		t.Errorf("invalid = %v", invalid)
	}
	// page_size 0: everything in one reply, as before paging.
	all, err := op.ListTasks(ctxT(t), &registrarv1.ListTasksRequest{})
	if err != nil || len(all.Tasks) != 7 || len(all.Invalid) != 1 || all.NextPageToken != "" {
		t.Errorf("unpaged: %d tasks, %d invalid, token %q, %v", len(all.GetTasks()), len(all.GetInvalid()), all.GetNextPageToken(), err)
	}
	_, err = op.ListTasks(ctxT(t), &registrarv1.ListTasksRequest{PageSize: 5001})
	wantStatus(t, err, codes.InvalidArgument, "invalid_request: page_size 5001 is not 0..5000")
}

// TestCreateTasks: the batch RPC answers every request on its own, in
// order, with CreateTask's code, message and reason; operators only.
func TestCreateTasks(t *testing.T) {
	r, fe := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode))
	op, _ := serveOperator(t, svc)
	item := func(task string, scope ...string) *registrarv1.CreateTaskRequest {
		return &registrarv1.CreateTaskRequest{Agent: "planner", Task: task, Model: "openai/gpt-4o", Prompt: testPrompt,
			Scope: scope, Principal: alice, TtlSeconds: 3600}
	}
	resp, err := op.CreateTasks(ctxT(t), &registrarv1.CreateTasksRequest{Tasks: []*registrarv1.CreateTaskRequest{
		item("a", "kb:read"), item("b", "admin"), item("a", "kb:read"), item("c", "kb:read"),
		{Agent: "researcher", Task: "x", ParentTask: plannerP},
	}})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		code   codes.Code
		reason string
	}
	wants := []want{{codes.OK, ""}, {codes.PermissionDenied, "scope_not_allowed"}, {codes.AlreadyExists, "conflict"},
		{codes.OK, ""}, {codes.InvalidArgument, "invalid_request"}}
	if len(resp.Results) != len(wants) {
		t.Fatalf("%d results", len(resp.Results))
	}
	for i, w := range wants {
		res := resp.Results[i]
		if codes.Code(res.Code) != w.code || res.Reason != w.reason || (w.code == codes.OK) != (res.Task != nil) ||
			(w.code != codes.OK && res.Message == "") {
			t.Errorf("result %d = %v, want %v", i, res, w)
		}
	}
	if n := len(fe.Entries()); n != 2 {
		t.Errorf("%d entries, want a and c", n)
	}
	_, err = op.CreateTasks(ctxT(t), &registrarv1.CreateTasksRequest{Tasks: make([]*registrarv1.CreateTaskRequest, 5001)})
	wantStatus(t, err, codes.InvalidArgument, "invalid_request: 5001 tasks in one call, at most 5000")
}
