package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// quietMsg is the refusal of re-creating id, revoked at at.
func quietMsg(id string, at time.Time, quiet time.Duration) string {
	return fmt.Sprintf("recently_revoked: task %s was revoked through this registrar at %s; it may be created again from %s (recreate_quiet_period %s, while SPIRE's caches may still serve or authorize the revoked incarnation): use a fresh task ID",
		id, at.UTC().Format(time.RFC3339), at.Add(quiet).UTC().Format(time.RFC3339), quiet)
}

// TestRecreateWithinQuietPeriod (review 19): a task ID revoked through the
// registrar is not created again — as a root task, in a batch, as an
// operator's child, or delegated by a task — until the quiet period has
// passed since its revocation (the task's and its descendants'); a fresh
// task ID is created at once. Before, an immediate revoke + create went
// through while SPIRE still authorized the deleted entry: the revoked
// process minted JWT-SVIDs with the new incarnation's claims
// (internal/devstack.TestRecreateQuietPeriod).
func TestRecreateWithinQuietPeriod(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clk := &testClock{t: now}
	ca := testca.New(t, testTD, now)
	r, _ := newRegistrar(t, loadPolicy(t))
	const quiet = 6 * time.Minute
	svc := New(r, WithDefaultParentID(testNode), WithQuietPeriod(quiet), WithClock(clk.now))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())

	createPlanner(t, op, "P")
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, ParentTask: plannerP, TtlSeconds: 1800}); err != nil {
		t.Fatal(err)
	}
	revokedAt := now.Add(time.Second)
	clk.set(revokedAt)
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	const childR = "spiffe://example.org/agent/researcher/task/R"
	createP := &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read", "kb:write"}, Principal: "spiffe://example.org/user/carol", TtlSeconds: 3 * 3600}
	for _, at := range []time.Time{revokedAt, revokedAt.Add(quiet - time.Nanosecond)} {
		clk.set(at)
		_, err := op.CreateTask(ctxT(t), createP)
		wantStatus(t, err, codes.FailedPrecondition, quietMsg(plannerP, revokedAt, quiet))
		if ReasonOf(err) != registrar.ReasonRecentlyRevoked {
			t.Errorf("reason %v, want recently_revoked", ReasonOf(err))
		}
	}

	// A batch: P refused on its own, a fresh ID created.
	res, err := op.CreateTasks(ctxT(t), &registrarv1.CreateTasksRequest{Tasks: []*registrarv1.CreateTaskRequest{createP,
		{Agent: "planner", Task: "P2", Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.GetResults()[0]; got.GetReason() != "recently_revoked" || got.GetCode() != int32(codes.FailedPrecondition) ||
		got.GetMessage() != quietMsg(plannerP, revokedAt, quiet) {
		t.Errorf("batch: P got %v, want recently_revoked", got)
	}
	if got := res.GetResults()[1]; got.GetTask() == nil {
		t.Errorf("batch: the fresh ID P2 got %v, want a task", got)
	}

	// The revoked child's ID: neither an operator's child of P2 nor
	// delegated by P2.
	_, err = op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, ParentTask: "spiffe://example.org/agent/planner/task/P2", TtlSeconds: 1800})
	wantStatus(t, err, codes.FailedPrecondition, quietMsg(childR, revokedAt, quiet))
	p2 := agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/P2")), ca.X509Bundle())
	_, err = p2.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800})
	// a delegating task is told no time and no source (review 20)
	wantStatus(t, err, codes.FailedPrecondition, "recently_revoked: this task ID is not available now: use a fresh task ID")
	if _, err := p2.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R-fresh", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800}); err != nil {
		t.Errorf("a fresh child ID: %v", err)
	}

	// Once the quiet period has passed, at its first instant.
	clk.set(revokedAt.Add(quiet))
	got, err := op.CreateTask(ctxT(t), createP)
	if err != nil {
		t.Fatalf("P after the quiet period: %v", err)
	}
	if got.GetClaimsJson() == "" || got.GetIncarnation() == "" {
		t.Errorf("P after the quiet period: %v", got)
	}
	if _, err := p2.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800}); err != nil {
		t.Errorf("R after the quiet period: %v", err)
	}
}

// TestQuietPeriodOff: WithQuietPeriod(0) creates a revoked task ID again
// at once (the created_at checks and incarnations are all that hold then).
func TestQuietPeriodOff(t *testing.T) {
	r, _ := newRegistrar(t, loadPolicy(t))
	op, _ := serveOperator(t, New(r, WithDefaultParentID(testNode), WithQuietPeriod(0)))
	createPlanner(t, op, "P")
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	createPlanner(t, op, "P")
}

// TestDelegateSlackWindowClosed (review 19): an X.509-SVID of the revoked
// incarnation issued (NotBefore + 10 s) one second before the re-created
// entry's created_at — a task "restarted" by revoke + create within a
// second or two of the old process's last SVID rotation — passed the
// created_at check's one-second slack and delegated from the new
// incarnation. With the quiet period the restart is refused, so the old
// SVID finds no parent; once the quiet period has passed, the old
// incarnation's credentials (issued before the revocation) are a quiet
// period older than the new entry and refused as a revoked incarnation.
func TestDelegateSlackWindowClosed(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clk := &testClock{t: now}
	ca := testca.New(t, testTD, now)
	r, fe := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode), WithJWTSVIDs(ca.JWTBundle(), testAudience), WithClock(clk.now))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	planner := spiffeid.RequireFromString(plannerP)

	createPlanner(t, op, "P")
	// Issued by SPIRE at the revocation (NotBefore backdated 10 s).
	oldSVID := ca.CreateX509SVID(planner, testca.WithLifetime(now.Add(-10*time.Second), now.Add(3*time.Minute)))
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	recreate := &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read", "kb:write"}, Principal: "spiffe://example.org/user/carol", TtlSeconds: 3 * 3600}
	_, err := op.CreateTask(ctxT(t), recreate)
	wantStatus(t, err, codes.FailedPrecondition, quietMsg(plannerP, now, DefaultQuietPeriod))
	old := agentClient(t, addr, oldSVID, ca.X509Bundle())
	delegate := &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R-slack",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800}
	got, err := old.DelegateTask(ctxT(t), delegate)
	wantStatus(t, err, codes.NotFound, "parent_not_found: no entry for "+plannerP)

	clk.set(now.Add(DefaultQuietPeriod))
	if _, err := op.CreateTask(ctxT(t), recreate); err != nil {
		t.Fatal(err)
	}
	created := now.Add(DefaultQuietPeriod)
	for _, e := range fe.Entries() { // the fake Entry API sets no created_at
		if e.GetSpiffeId().GetPath() == planner.Path() {
			fe.Delete(e.GetId())
			e.CreatedAt = created.Unix()
			fe.Add(e)
		}
	}
	got, err = old.DelegateTask(ctxT(t), delegate)
	wantStatus(t, err, codes.NotFound, fmt.Sprintf("parent_not_found: the caller's credential was issued at %s, before the entry of %s was created (%s): it belongs to a revoked incarnation of that task",
		now.UTC().Format(time.RFC3339), plannerP, created.UTC().Format(time.RFC3339)))
	if err == nil {
		t.Errorf("the revoked incarnation's X.509-SVID delegated from the new one: %s", got.GetClaimsJson())
	}
}

// TestTombstonesBounded: a tombstone is kept for the quiet period, and
// past it until the liveness hub has sent it; never more than
// maxTombstones (the oldest go first).
func TestTombstonesBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clk := &testClock{t: t0}
	tb := newTombstones(clk.now, time.Minute)
	tb.add([]string{"a", "b"})
	if _, _, ok := tb.quietUntil("a"); !ok {
		t.Fatal("a not quiet at once")
	}
	clk.set(t0.Add(time.Minute))
	if _, _, ok := tb.quietUntil("a"); ok {
		t.Fatal("a still quiet after the quiet period")
	}
	tb.add([]string{"c"})
	if len(tb.log) != 1 || len(tb.last) != 1 {
		t.Fatalf("kept %d tombstones (%d IDs) past the quiet period with no hub, want 1 (c)", len(tb.log), len(tb.last))
	}

	// A running hub keeps what it has not sent, past the quiet period.
	_, seq := tb.since(0, true)
	tb.add([]string{"d"})
	clk.set(t0.Add(time.Hour))
	tb.add([]string{"e"})
	if ids, _ := tb.since(seq, false); len(ids) != 2 || ids[0] != "d" || ids[1] != "e" {
		t.Fatalf("the hub got %v, want [d e]", ids)
	}
	if len(tb.log) != 1 || tb.log[0].id != "e" {
		t.Fatalf("after the hub sent them, kept %v, want [e]", tb.log)
	}

	// The bound: the oldest go first, even within the quiet period.
	tb.release()
	ids := make([]string, maxTombstones+10)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%d", i)
	}
	if early := tb.add(ids); early != 11 { // e and t0…t9
		t.Errorf("add reported %d forgotten early, want 11", early)
	}
	if len(tb.log) != maxTombstones || len(tb.last) != maxTombstones {
		t.Fatalf("kept %d (%d IDs), want %d", len(tb.log), len(tb.last), maxTombstones)
	}
	if _, _, ok := tb.quietUntil("t9"); ok {
		t.Error("t9 kept past the bound")
	}
	if _, _, ok := tb.quietUntil("t10"); !ok {
		t.Error("t10 forgotten within the bound")
	}
}

// TestCreateDuringRevoke: a create of the task ID that reads SPIRE after
// the revoke deleted its entry but before the revoke has finished (it
// lists again for descendants) is refused as well.
func TestCreateDuringRevoke(t *testing.T) {
	fe := fakeentry.Start(t)
	var op registrarv1.RegistrarClient
	var during error
	afterDelete := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if method == "/spire.api.server.entry.v1.Entry/BatchDeleteEntry" && during == nil {
			_, during = op.CreateTask(ctx, &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o",
				Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600})
			if during == nil {
				during = errors.New("created")
			}
		}
		return err
	}
	conn, err := grpc.NewClient(fe.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithChainUnaryInterceptor(afterDelete))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := registrar.New(conn, testTD, loadPolicy(t), registrar.WithClock(func() time.Time { return testNow }))
	op, _ = serveOperator(t, New(r, WithDefaultParentID(testNode)))
	createPlanner(t, op, "P")
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	if ReasonOf(during) != registrar.ReasonRecentlyRevoked {
		t.Errorf("create while the revoke lists descendants: %v, want recently_revoked", during)
	}
}

// TestRevokingIsQuiet: an ID being revoked is quiet until the revoke ends
// (then its tombstone, if it removed anything, takes over); not with the
// quiet period off.
func TestRevokingIsQuiet(t *testing.T) {
	tb := newTombstones(time.Now, time.Minute)
	done := tb.revoking("x")
	if _, _, ok := tb.quietUntil("x"); !ok {
		t.Error("x not quiet while being revoked")
	}
	done()
	if _, _, ok := tb.quietUntil("x"); ok || len(tb.busy) != 0 {
		t.Error("x quiet after a revoke that removed nothing")
	}
	off := newTombstones(time.Now, 0)
	defer off.revoking("y")()
	if _, _, ok := off.quietUntil("y"); ok {
		t.Error("y quiet with the quiet period off")
	}
}

// BenchmarkTombstonesMemory reports the heap one tombstone takes (a task
// SPIFFE ID of 48 bytes, the store full), and the time of a create's check.
func BenchmarkTombstonesMemory(b *testing.B) {
	ids := make([]string, maxTombstones)
	for i := range ids {
		ids[i] = fmt.Sprintf("spiffe://example.org/agent/planner/task/T-%06d", i)
	}
	var before, after runtime.MemStats
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		tb := newTombstones(time.Now, time.Hour)
		b.StartTimer()
		tb.add(ids)
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(ids)), "B/tombstone")
		runtime.KeepAlive(tb)
		b.StartTimer()
	}
}

// BenchmarkQuietCheck is a create's lookup in a full store.
func BenchmarkQuietCheck(b *testing.B) {
	tb := newTombstones(time.Now, time.Hour)
	ids := make([]string, maxTombstones)
	for i := range ids {
		ids[i] = fmt.Sprintf("spiffe://example.org/agent/planner/task/T-%06d", i)
	}
	tb.add(ids)
	b.ResetTimer()
	for i := range b.N {
		tb.quietUntil(ids[i%len(ids)])
	}
}

// TestRecreateAfterRevokeElsewhere: a registrar that feeds verifiers
// lists SPIRE every interval; a task that leaves its listing before its
// expiry — revoked through another registrar or the CLI, deleted in SPIRE
// directly — gets a tombstone too, and its ID is not created again here
// within the quiet period. A task that left by expiring does not; nor is a
// seen task named again in the feed (the listing's diff named it).
func TestRecreateAfterRevokeElsewhere(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	clk := &testClock{t: now}
	r, _ := newRegistrar(t, loadPolicy(t))
	const quiet = 6 * time.Minute
	svc := New(r, WithDefaultParentID(testNode), WithQuietPeriod(quiet), WithClock(clk.now))
	op, _ := serveOperator(t, svc)
	h := svc.hub
	h.running = true // publish is driven by the test
	sub := h.subscribe()
	const expired = "spiffe://example.org/agent/planner/task/P-expired"
	ids := []string{plannerP, expired, "spiffe://example.org/agent/planner/task/P-live"}
	h.publishListing(now, ids, []int64{1, 2, 3}, []int64{now.Unix() + 3600, now.Unix() + 1, now.Unix() + 3600}, nil)
	<-sub.ch
	clk.set(now.Add(2 * time.Second))
	h.publishListing(now.Add(2*time.Second), ids[2:], []int64{3}, []int64{now.Unix() + 3600}, nil)
	if d := <-sub.ch; len(d.Removed) != 2 {
		t.Fatalf("delta removed %v, want P and P-expired", d.Removed)
	}

	_, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600})
	seenAt := now.Add(2 * time.Second)
	wantStatus(t, err, codes.FailedPrecondition, fmt.Sprintf("recently_revoked: task %s was revoked through another registrar or deleted in SPIRE (this registrar saw its entry gone at %s); it may be created again from %s (recreate_quiet_period 6m0s, while SPIRE's caches may still serve or authorize the revoked incarnation): use a fresh task ID",
		plannerP, seenAt.UTC().Format(time.RFC3339), seenAt.Add(quiet).UTC().Format(time.RFC3339)))
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P-expired", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600}); err != nil {
		t.Errorf("a task ID whose entry expired: %v", err)
	}
	h.publishListing(now.Add(3*time.Second), ids[2:], []int64{3}, []int64{now.Unix() + 3600}, nil)
	if d := <-sub.ch; len(d.Removed) != 0 {
		t.Errorf("a task seen gone named again in the feed: %v", d.Removed)
	}
	clk.set(seenAt.Add(quiet))
	createPlanner(t, op, "P")
}
