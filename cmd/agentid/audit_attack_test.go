package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// The attacks of issue 13 against `agentid audit verify`: someone who can
// write the log file rewrites it. Each must fail verification with a
// message naming what is wrong. The CA and the SVIDs are issued at the
// real current time, as `audit verify` verifies at the current time.

var auditVerifierID = spiffeid.RequireFromString("spiffe://example.org/verifier")

// genuineLog writes six decisions (the fourth a denial) signed by the
// verifier's SVID, a checkpoint every 3 records and one on Close.
func genuineLog(t *testing.T, path string, signer x509svid.Source, clock func() time.Time) {
	t.Helper()
	w, err := audit.Open(path, audit.Options{Signer: signer, CheckpointEvery: 3, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		rec := audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow",
			Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb/" + string(rune('a'+i))}}
		if i == 3 {
			rec.Decision, rec.Action.Path = "deny", "/kb/admin"
		}
		if err := w.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// readRecords parses a log file's lines.
func readRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var rec audit.Record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// rewrite writes the decisions of recs that keep accepts into a new log at
// path, re-chained (and re-signed when signer is set) by a fresh writer:
// what an attacker with write access to the file and the writer's code can
// do.
func rewrite(t *testing.T, path string, recs []audit.Record, keep func(audit.Record) bool, opts audit.Options) {
	t.Helper()
	os.Remove(path)
	w, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Type != audit.TypeDecision || !keep(rec) {
			continue
		}
		rec.Seq, rec.Prev = 0, ""
		if err := w.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func noDenial(rec audit.Record) bool { return rec.Decision != "deny" }

func expectBroken(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errs := runCLI(t, append([]string{"audit", "verify"}, args...)...)
	if code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("audit verify %s: exit %d, want 1 with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
}

// TestAuditAttackA1StrippedCheckpoints: the log rewritten without its
// checkpoints and without the denial; and a log that never had a signer
// (the registrar without an SVID).
func TestAuditAttackA1StrippedCheckpoints(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testca.New(t, testTD, now)
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	genuineLog(t, path, ca.CreateX509SVID(auditVerifierID), nil)
	if code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, path); code != 0 {
		t.Fatalf("genuine log: exit %d\n%s\n%s", code, out, errs)
	}

	rewrite(t, path, readRecords(t, path), noDenial, audit.Options{})
	expectBroken(t, "no signed checkpoint", "--bundle", bundle, "--trust-domain", "example.org", path)
	expectBroken(t, "no signed checkpoint", "--bundle", bundle, path)

	unsigned := filepath.Join(dir, "registrar.log")
	genuineLog(t, unsigned, nil, nil)
	expectBroken(t, "no signed checkpoint", "--bundle", bundle, "--trust-domain", "example.org", unsigned)
}

// TestAuditAttackA2TaskSigner: the log (denial removed) re-signed with an
// agent task's own SVID, which the trust bundle vouches for.
func TestAuditAttackA2TaskSigner(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testca.New(t, testTD, now)
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	genuineLog(t, path, ca.CreateX509SVID(auditVerifierID), nil)

	rewrite(t, path, readRecords(t, path), noDenial, audit.Options{Signer: ca.CreateX509SVID(testTask), CheckpointEvery: 3})
	expectBroken(t, "task", "--bundle", bundle, path)
	// Pinned: only the verifier may sign.
	expectBroken(t, "not a pinned signer", "--bundle", bundle, "--signer", auditVerifierID.String(), path)
}

// TestAuditAttackA2ExpiredSVID: the log re-signed with the verifier's own
// SVID that expired 30 minutes ago (a stolen old key), the checkpoint times
// backdated into its validity.
func TestAuditAttackA2ExpiredSVID(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testca.New(t, testTD, now)
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	genuineLog(t, path, ca.CreateX509SVID(auditVerifierID), nil)

	old := ca.CreateX509SVID(auditVerifierID, testca.WithLifetime(now.Add(-90*time.Minute), now.Add(-30*time.Minute)))
	backdated := now.Add(-time.Hour)
	rewrite(t, path, readRecords(t, path), noDenial, audit.Options{Signer: old, CheckpointEvery: 3,
		Clock: func() time.Time { return backdated }})
	expectBroken(t, "expired", "--bundle", bundle, path)
	expectBroken(t, "expired", "--bundle", bundle, "--signer", auditVerifierID.String(), path)
}

// TestAuditAttackA3Truncated: the genuine log cut after its first
// checkpoint (4 of 10 lines left).
func TestAuditAttackA3Truncated(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testca.New(t, testTD, now)
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	genuineLog(t, path, ca.CreateX509SVID(auditVerifierID), nil)
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(path, []byte(strings.Join(lines[:4], "")), 0o600)
	expectBroken(t, "witness", "--bundle", bundle, path)
}
