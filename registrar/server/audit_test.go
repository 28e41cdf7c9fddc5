package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentid/agentid/audit"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
)

// TestAuditLogsTaskActions: created, refused and revoked tasks each leave a
// "registrar" record, and the log verifies.
func TestAuditLogsTaskActions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registrar-audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRegistrar(t, loadPolicy(t))
	op, _ := serveOperator(t, New(r, WithDefaultParentID(testNode), WithAudit(w)))

	createPlanner(t, op, "P", "kb:read")
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "Q", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"admin"}, Principal: alice, TtlSeconds: 3600}); err == nil {
		t.Fatal("scope admin accepted")
	}
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if sum, err := audit.VerifyChain([]string{path}); err != nil || sum.Records != 3 {
		t.Fatalf("verify: %+v %v", sum, err)
	}
	data, _ := os.ReadFile(path)
	var recs []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	want := []struct{ name, decision, path, rule string }{
		{"CreateTask", "allow", plannerP, ""},
		{"CreateTask", "deny", "", "policy.hcl:2"},
		{"RevokeTask", "allow", plannerP, ""},
	}
	for i, w := range want {
		rec := recs[i]
		if rec.Type != audit.TypeRegistrar || rec.Action.Name != w.name || rec.Decision != w.decision || rec.Action.Path != w.path ||
			(w.rule != "" && (len(rec.Rules) != 1 || rec.Rules[0] != w.rule)) {
			t.Errorf("record %d: %+v %+v", i, rec, rec.Action)
		}
	}
	if !strings.Contains(string(recs[0].Claims), `"agent":"planner"`) || !strings.Contains(recs[1].Reason, "scope_not_allowed") {
		t.Errorf("claims %s reason %q", recs[0].Claims, recs[1].Reason)
	}
}
