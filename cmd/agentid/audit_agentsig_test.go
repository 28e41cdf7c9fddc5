package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// signedRecord is the decision record a verifier writes for a request
// that signer signed (POST https://kb.internal<path>, body).
func signedRecord(t *testing.T, signer *x509svid.SVID, path, body string, at time.Time) audit.Record {
	t.Helper()
	m := &httpsig.Message{Method: "POST", TargetURI: "https://kb.internal" + path, Header: http.Header{}}
	s := httpsig.RequestSigner{Chain: signer.Certificates, Key: signer.PrivateKey}
	if _, err := s.Sign(m, []byte(body), at); err != nil {
		t.Fatal(err)
	}
	v, err := httpsig.VerifyRequest(m, []byte(body), httpsig.VerifyOptions{Now: at})
	if err != nil {
		t.Fatal(err)
	}
	e := v.Evidence()
	return audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow",
		Action:   &audit.Action{Kind: "http", Method: "POST", Path: path},
		AgentSig: &audit.AgentSignature{Label: e.Label, Base: e.Base, Sig: e.Signature}}
}

// proveFirst writes a log whose first record is rec, proves it and runs
// verify-receipt on the receipt.
func proveFirst(t *testing.T, ca *testca.CA, rec audit.Record) (int, string, string) {
	t.Helper()
	dir := t.TempDir()
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(rec)
	for range 2 {
		w.Append(audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow", Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb/x"}})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	receipt := filepath.Join(dir, "receipt.json")
	if code, out, errs := runCLI(t, "audit", "prove", "--index", "0", "--out", receipt, path); code != 0 {
		t.Fatalf("prove: exit %d\n%s\n%s", code, out, errs)
	}
	return runCLI(t, append([]string{"audit", "verify-receipt", receipt, "--bundle", bundle}, verifyReceiptExtra...)...)
}

// verifyReceiptExtra are more flags for proveFirst's verify-receipt.
var verifyReceiptExtra []string

// TestAuditReceiptAgentSignature: the receipt of a signed request shows,
// with the bundle alone, that the task's key requested exactly this
// method, URI and body digest at this time. A verifier that writes a
// signature it made itself (its own key, a certificate it minted for the
// task's ID), or that records another action than the one signed, is
// caught.
func TestAuditReceiptAgentSignature(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	task := ca.CreateX509SVID(testTask)
	code, out, errs := proveFirst(t, ca, signedRecord(t, task, "/pay", `{"amount":10}`, now))
	want := "agent signature: OK: " + testTask.String() + " (its X.509-SVID key, keyid " + httpsig.KeyID(task.Certificates[0]) +
		", ecdsa-p256-sha256) requested POST https://kb.internal/pay with body " + httpsig.ContentDigest([]byte(`{"amount":10}`)) +
		" at " + now.UTC().Format(time.RFC3339)
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "not proven: the body itself") {
		t.Fatalf("exit %d\n%s\n%s\nwant %q", code, out, errs, want)
	}

	// The verifier fabricates: a key and certificate of its own making.
	fake := testca.New(t, testTD, now).CreateX509SVID(testTask)
	code, out, errs = proveFirst(t, ca, signedRecord(t, fake, "/pay", `{"amount":10}`, now))
	if code != 1 || !strings.Contains(errs, "FAILED: the agent's signature: signature_untrusted") {
		t.Fatalf("fabricated signature: exit %d\n%s\n%s", code, out, errs)
	}
	// The record names another action than the one the agent signed.
	rec := signedRecord(t, task, "/pay", `{}`, now)
	rec.Action.Path = "/refund"
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, `FAILED: the agent's signature covers POST https://kb.internal/pay, the record POST /refund`) {
		t.Fatalf("other action: exit %d\n%s\n%s", code, out, errs)
	}
	// The record names another peer than the signer.
	rec = signedRecord(t, task, "/pay", `{}`, now)
	rec.Peer = "spiffe://example.org/agent/x/task/y"
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, "FAILED: the agent's signature is by "+testTask.String()+", the record's peer spiffe://example.org/agent/x/task/y") {
		t.Fatalf("other peer: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAuditReceiptAgentSignatureBody: when the verifier recorded the body
// (signatures { record_body = true }), verify-receipt proves it too: its
// digest must be the signed one. A body the verifier swapped is caught.
func TestAuditReceiptAgentSignatureBody(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, testTD, now)
	task := ca.CreateX509SVID(testTask)
	rec := signedRecord(t, task, "/pay", `{"amount":10}`, now)
	rec.AgentSig.Body = []byte(`{"amount":10}`)
	code, out, errs := proveFirst(t, ca, rec)
	if code != 0 || !strings.Contains(out, "agent signature: body recorded (13 bytes), its SHA-256 is the signed Content-Digest: {\"amount\":10}") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	rec.AgentSig.Body = []byte(`{"amount":99}`)
	code, out, errs = proveFirst(t, ca, rec)
	if code != 1 || !strings.Contains(errs, "FAILED: the recorded body (13 bytes) is not the one the agent signed") {
		t.Fatalf("swapped body: exit %d\n%s\n%s", code, out, errs)
	}
}
