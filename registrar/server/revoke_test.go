package server

import (
	"testing"

	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"google.golang.org/grpc/codes"
)

// TestRevokeTaskAgain: RevokeTask of a task revoked already, or of one
// that never existed, is NotFound with the not_found reason and removes
// nothing else; a child left behind by the parent's entry deleted directly
// in SPIRE is removed by revoking the parent, and the error says so.
func TestRevokeTaskAgain(t *testing.T) {
	r, fe := newRegistrar(t, loadPolicy(t))
	op, _ := serveOperator(t, New(r, WithDefaultParentID(testNode)))
	p := createPlanner(t, op, "P", "kb:read")
	createPlanner(t, op, "Q", "kb:read")
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, ParentTask: plannerP, TtlSeconds: 3600}); err != nil {
		t.Fatal(err)
	}
	fe.Delete(p.EntryId)
	_, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP})
	wantStatus(t, err, codes.NotFound, "not_found: no entry for "+plannerP+": unknown task, or revoked already; removed 1 descendant entries that still named it")
	for _, id := range []string{plannerP, "spiffe://example.org/agent/planner/task/never"} {
		_, err = op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: id})
		wantStatus(t, err, codes.NotFound, "not_found: no entry for "+id+": unknown task, or revoked already")
		if ReasonOf(err) != registrar.ReasonNotFound {
			t.Errorf("ReasonOf = %v", ReasonOf(err))
		}
	}
	if n := len(fe.Entries()); n != 1 {
		t.Errorf("%d entries left, want Q alone", n)
	}
}
