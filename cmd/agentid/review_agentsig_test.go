package main

import (
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
)

// TestReviewReceiptOldSignatureReattached: a verifier re-attaches a
// signature the agent made 50 minutes ago (POST /pay) to a record it writes
// now. verify-receipt should refuse: the signature expired long before
// the record's time.
func TestReviewReceiptOldSignatureReattached(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	old := now.Add(-50 * time.Minute)
	ca := testca.New(t, testTD, now)
	task := ca.CreateX509SVID(testTask, testca.WithLifetime(old.Add(-time.Minute), old.Add(time.Hour)))
	rec := signedRecord(t, task, "/pay", `{"amount":10}`, old)
	code, out, errs := proveFirst(t, ca, rec)
	t.Logf("exit %d\n%s\n%s", code, out, errs)
	if code == 0 {
		t.Fatalf("a 50-minute-old signature verified as evidence of a record written now: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestReviewReceiptMCPActionNotBound: the record says tools/call
// "delete_everything"; the agent's signature is of another MCP request
// (its body, not recorded, was a tools/call of "read"). verify-receipt
// should not say the agent signed this record's action.
func TestReviewReceiptMCPActionNotBound(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	task := ca.CreateX509SVID(testTask)
	rec := signedRecord(t, task, "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}}`, now)
	rec.Action = &audit.Action{Kind: "mcp", Method: "tools/call", Name: "delete_everything"}
	code, out, errs := proveFirst(t, ca, rec)
	if code == 0 && strings.Contains(out, "agent signature: OK") {
		t.Fatalf("an unrelated signature verified as the agent's for tools/call delete_everything: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAuditReceiptAgentSignatureBinding: what verify-receipt binds of an
// agent signature to its record besides the peer. An MCP action is read
// from the recorded body the way the verifier reads it: the same tool
// proves OK, another tool or a body that is no MCP request fails, and
// without the body the signature is shown "not bound to this action",
// never OK (exit 0: the record itself is proven). A kind not read from the
// request is not bound either. The record's time must lie within
// [created − window, expires + window]; --signature-window states the
// verifier's window.
func TestAuditReceiptAgentSignatureBinding(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	task := ca.CreateX509SVID(testTask)
	const call = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read","arguments":{"doc":"x"}}}`
	mcpRecord := func(name string, body []byte) audit.Record {
		rec := signedRecord(t, task, "/mcp", call, now)
		rec.Action = &audit.Action{Kind: "mcp", Method: "tools/call", Path: "/mcp", Name: name}
		rec.AgentSig.Body = body
		return rec
	}
	code, out, errs := proveFirst(t, ca, mcpRecord("read", []byte(call)))
	if code != 0 || !strings.Contains(out, "agent signature: OK: "+testTask.String()) || strings.Contains(out, "not bound") ||
		!strings.Contains(out, "not proven: that kb.internal is the service") {
		t.Fatalf("MCP, body recorded, same tool: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = proveFirst(t, ca, mcpRecord("delete_everything", []byte(call)))
	if code != 1 || !strings.Contains(errs, "FAILED: the agent signed mcp tools/call read, the record mcp tools/call delete_everything") {
		t.Fatalf("MCP, body recorded, another tool: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = proveFirst(t, ca, mcpRecord("delete_everything", nil))
	if code != 0 || strings.Contains(out, "agent signature: OK") ||
		!strings.Contains(out, "agent signature: not bound to this action: the record's mcp tools/call delete_everything is read from the request's body, which was not recorded") {
		t.Fatalf("MCP, body not recorded: exit %d\n%s\n%s", code, out, errs)
	}
	rec := signedRecord(t, task, "/mcp", `{"amount":1}`, now)
	rec.Action = &audit.Action{Kind: "mcp", Method: "tools/call", Path: "/mcp", Name: "read"}
	rec.AgentSig.Body = []byte(`{"amount":1}`)
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, "FAILED: the recorded body the agent signed is not the record's MCP request") {
		t.Fatalf("MCP, the body is no MCP request: exit %d\n%s\n%s", code, out, errs)
	}
	rec = signedRecord(t, task, "/other", call, now)
	rec.Action = &audit.Action{Kind: "mcp", Method: "tools/call", Path: "/mcp", Name: "read"}
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, "FAILED: the agent's signature covers POST https://kb.internal/other, the record an MCP request POSTed to /mcp") {
		t.Fatalf("MCP, another endpoint: exit %d\n%s\n%s", code, out, errs)
	}
	rec = signedRecord(t, task, "/pay", `{}`, now)
	rec.Action = &audit.Action{Kind: "grpc", Path: "/pay.Pay/Send"}
	code, out, errs = proveFirst(t, ca, rec)
	if code != 0 || strings.Contains(out, "agent signature: OK") || !strings.Contains(out, "agent signature: not bound to this action: a grpc action is not read from the signed request") {
		t.Fatalf("another kind: exit %d\n%s\n%s", code, out, errs)
	}

	// Time: a signature created 5 minutes after the record (the agent's
	// clock ahead) is outside [created − 60 s, …]; with the verifier's
	// window stated as 10 minutes it is inside, and the checkpoint's time
	// bounds created from above with the same window.
	later := ca.CreateX509SVID(testTask, testca.WithLifetime(now.Add(-time.Minute), now.Add(time.Hour)))
	rec = signedRecord(t, later, "/pay", `{}`, now.Add(5*time.Minute))
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, "is outside the agent's signature's [created − 1m0s, expires + 1m0s]") {
		t.Fatalf("created 5 minutes after the record: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = proveFirstWindow(t, ca, rec, "10m")
	if code != 0 || !strings.Contains(out, "agent signature: OK") || !strings.Contains(out, "within [created − 10m0s, expires + 10m0s]") {
		t.Fatalf("created 5 minutes after the record, window 10m: exit %d\n%s\n%s", code, out, errs)
	}
}

// proveFirstWindow is proveFirst with verify-receipt's --signature-window.
func proveFirstWindow(t *testing.T, ca *testca.CA, rec audit.Record, window string) (int, string, string) {
	t.Helper()
	old := verifyReceiptExtra
	verifyReceiptExtra = []string{"--signature-window", window}
	defer func() { verifyReceiptExtra = old }()
	return proveFirst(t, ca, rec)
}
