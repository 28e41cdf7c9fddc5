package server

import (
	"context"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// Review 20: the quiet period is checked once, before the create reads
// SPIRE. A DelegateTask of the child C that passed that check just before
// the operator's RevokeTask(C) began (a compromised parent retrying
// DelegateTask(C) in a loop: idempotent while C exists) reads SPIRE after
// the revoke deleted C and writes C again — inside the quiet period, which
// revoking()/add never see because the check is over.
func TestQuietPeriodCheckedAgainAfterTheWrite(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	const childC = "spiffe://example.org/agent/researcher/task/C"
	reached, release := make(chan struct{}), make(chan struct{})
	block := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if lr, ok := req.(*entryv1.ListEntriesRequest); ok && lr.GetFilter().GetBySpiffeId().GetPath() == "/agent/researcher/task/C" {
			if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-rev20-block")) > 0 {
				select {
				case reached <- struct{}{}:
					<-release
				default:
				}
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	fe := fakeentry.Start(t)
	conn, err := grpc.NewClient(fe.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(block))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := registrar.New(conn, testTD, loadPolicy(t), registrar.WithClock(func() time.Time { return testNow }))
	svc := New(r, WithDefaultParentID(testNode), WithQuietPeriod(6*time.Minute))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	createPlanner(t, op, "P")
	p := agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString(plannerP)), ca.X509Bundle())
	delegate := &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "C", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800}
	if _, err := p.DelegateTask(ctxT(t), delegate); err != nil {
		t.Fatal(err)
	}
	// The parent's retry: past the quiet check (C is live), about to read SPIRE.
	type res struct {
		task *registrarv1.Task
		err  error
	}
	done := make(chan res, 1)
	go func() {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "x-rev20-block", "1")
		task, err := p.DelegateTask(ctx, delegate)
		done <- res{task, err}
	}()
	<-reached
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: childC}); err != nil {
		t.Fatal(err)
	}
	close(release)
	got := <-done
	if got.err == nil {
		n := 0
		for _, e := range fe.Entries() {
			if e.GetSpiffeId().GetPath() == "/agent/researcher/task/C" {
				n++
			}
		}
		t.Fatalf("C, revoked an instant ago, was created again within its quiet period (%d entries of C in SPIRE; incarnation %s)", n, got.task.GetIncarnation())
	}
	if ReasonOf(got.err) != registrar.ReasonRecentlyRevoked {
		t.Errorf("the racing delegation: %v, want recently_revoked", got.err)
	}
}

// Review 20: the quiet check runs before the delegation's policy checks,
// so any task can learn whether any task ID — of an agent it may not
// delegate to, of another principal's tree — was revoked in the last
// quiet period, and when to the second: P (alice's planner) asks to
// delegate "planner/Q" (carol's root task, revoked by the operator;
// planner's delegators are only "looper") and is told Q's revocation time
// instead of the policy's refusal it gets for any other planner ID.
func TestQuietRefusalTellsADelegatorNothing(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	r, _ := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode), WithQuietPeriod(6*time.Minute))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	createPlanner(t, op, "P")
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "Q", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/carol", TtlSeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: "spiffe://example.org/agent/planner/task/Q"}); err != nil {
		t.Fatal(err)
	}
	p := agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString(plannerP)), ca.X509Bundle())
	probe := func(task string) error {
		_, err := p.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "planner", Task: task, Model: "openai/gpt-4o",
			Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 600})
		return err
	}
	other, revoked := probe("Z-never-existed"), probe("Q")
	t.Logf("never existed: %v", other)
	t.Logf("revoked Q:     %v", revoked)
	if ReasonOf(other) != ReasonOf(revoked) {
		t.Errorf("a task tells a recently revoked ID of another tree (%v) from any other (%v) by the delegation's refusal", ReasonOf(revoked), ReasonOf(other))
	}
}
