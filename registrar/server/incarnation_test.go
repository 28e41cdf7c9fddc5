package server

import (
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/metadata"
)

// TestDelegateWithRevokedIncarnation: an agent whose task was
// revoked keeps an X.509-SVID (or JWT-SVID) of the revoked incarnation for
// up to its TTL. When the operator creates the task ID again (task IDs are
// the caller's), the verifiers refuse the old incarnation's credentials
// (README: "nor once its task ID is created again"); so must DelegateTask.
// Before review 16 the registrar took the old credential as the new
// incarnation and let it delegate: the child got the new incarnation's
// principal, scopes and deadline. The quiet period is off here: this is
// the created_at check, which still holds for a task ID created again
// through another registrar (TestRecreateWithinQuietPeriod has this one's).
func TestDelegateWithRevokedIncarnation(t *testing.T) {
	now := time.Now()
	ca := testca.New(t, testTD, now)
	r, fe := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode), WithJWTSVIDs(ca.JWTBundle(), testAudience), WithQuietPeriod(0))
	op, _ := serveOperator(t, svc)
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	planner := spiffeid.RequireFromString(plannerP)

	// Incarnation 1 of P (principal alice, kb:read); its agent is
	// compromised and keeps its SVIDs, issued 2 minutes ago.
	createPlanner(t, op, "P")
	oldSVID := ca.CreateX509SVID(planner, testca.WithLifetime(now.Add(-2*time.Minute), now.Add(3*time.Minute)))
	oldJWT := ca.CreateJWTSVID(planner, []string{testAudience}, map[string]any{
		"iat": now.Add(-2 * time.Minute).Unix(), "exp": now.Add(3 * time.Minute).Unix()})

	// The operator revokes P and, a minute later, creates P again for
	// carol with kb:read and kb:write.
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "P", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read", "kb:write"}, Principal: "spiffe://example.org/user/carol", TtlSeconds: 3 * 3600}); err != nil {
		t.Fatal(err)
	}
	// The fake Entry API sets no created_at: give the new entry the time
	// SPIRE would have (a minute ago, after the old SVIDs were issued).
	for _, e := range fe.Entries() {
		if e.GetSpiffeId().GetPath() == planner.Path() {
			fe.Delete(e.GetId())
			e.CreatedAt = now.Add(-time.Minute).Unix()
			fe.Add(e)
		}
	}

	old := agentClient(t, addr, oldSVID, ca.X509Bundle())
	got, err := old.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R-x509",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800})
	if err == nil || !strings.Contains(err.Error(), "revoked incarnation") {
		t.Errorf("X.509-SVID of the revoked incarnation (issued %s, entry re-created %s) delegated from the new one (%v): %s",
			oldSVID.Certificates[0].NotBefore.Format(time.RFC3339), now.Add(-time.Minute).Format(time.RFC3339), err, got.GetClaimsJson())
	}
	gateway := agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/gateway")), ca.X509Bundle())
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+oldJWT)
	got, err = gateway.DelegateTask(ctx, &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R-jwt",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800})
	if err == nil || !strings.Contains(err.Error(), "revoked incarnation") {
		t.Errorf("JWT-SVID of the revoked incarnation delegated from the new one (%v): %s", err, got.GetClaimsJson())
	}
}
