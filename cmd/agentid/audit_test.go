package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, testNow)
	path := filepath.Join(dir, "audit.log")
	w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier")),
		CheckpointEvery: 5, Clock: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	for range 12 {
		w.Append(audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow"})
	}
	w.Close()
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())

	// The SVID expired long ago: --at says when the auditor knows the log
	// existed (without it, or a witness, the verification time is now).
	at := testNow.Add(time.Minute).Format(time.RFC3339)
	code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, "--at", at, path)
	if code != 0 || !strings.Contains(out, ": 18 records in 1 file(s), last seq 18, 3 signed checkpoint(s) by spiffe://example.org/verifier") {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	// The README's form: flags after the file (was ignored: the bundle
	// flag was read as a second log file).
	code, out2, errs := runCLI(t, "audit", "verify", path, "--bundle", bundle, "--at", at)
	if code != 0 || out2 != out {
		t.Fatalf("flags after FILE: exit %d: %s\n%s", code, errs, out2)
	}

	data, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(data), `"decision":"allow"`, `"decision":"deny"`, 1)), 0o600)
	code, _, errs = runCLI(t, "audit", "verify", "--bundle", bundle, "--at", at, path)
	if code != 1 || !strings.Contains(errs, "BROKEN at "+path+" line 2 (seq 2): prev hash does not match") {
		t.Fatalf("tampered: exit %d: %s", code, errs)
	}
}
