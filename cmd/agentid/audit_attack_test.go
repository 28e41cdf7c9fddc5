package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/witness"
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

// witnessed starts a witness (its HTTP handler on a loopback server) and
// returns its client, its verifier key and its state directory.
func witnessed(t *testing.T, ca *testca.CA) (*witness.Client, string, string) {
	t.Helper()
	skey, vkey, err := witness.GenerateKey("witness.example.org")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	w, err := witness.New(witness.Config{Key: skey, StateDir: state, Bundle: ca.X509Bundle(), Signers: []spiffeid.ID{auditVerifierID}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	t.Cleanup(srv.Close)
	return &witness.Client{URL: srv.URL}, vkey, state
}

// witnessedLog writes the genuine log with a witness and returns the
// witness's key (in a file) and its latest cosigned checkpoint (in a
// file), as an auditor gets them from the witness.
func witnessedLog(t *testing.T, dir string, ca *testca.CA, path string) (keyFile, checkpoint string) {
	t.Helper()
	wc, vkey, state := witnessed(t, ca)
	w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3, Witness: wc})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		rec := audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow",
			Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb/" + string(rune('a'+i))}}
		if i == 3 {
			rec.Decision, rec.Action.Path = "deny", "/kb/admin"
		}
		w.Append(rec)
		if err := w.Flush(); err != nil { // one checkpoint per 3 records, each sent to the witness
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WitnessError(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(state, "*.checkpoint"))
	if len(files) != 1 {
		t.Fatalf("witness state %v", files)
	}
	return writeFile(t, dir, "witness.pub", []byte(vkey+"\n")), files[0]
}

// TestAuditAttackA3Truncated: the genuine log cut after its first
// checkpoint; with the witness's key and its last cosigned checkpoint the
// cut is found (without them, a log that ends on a checkpoint is
// indistinguishable from one whose writer stopped there).
func TestAuditAttackA3Truncated(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	key, cp := witnessedLog(t, dir, ca, path)
	code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, "--witness-key", key, "--checkpoint", cp, path)
	if code != 0 || !strings.Contains(out, "witness witness.example.org") {
		t.Fatalf("genuine witnessed log: exit %d\n%s\n%s", code, out, errs)
	}
	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	os.WriteFile(path, []byte(strings.Join(lines[:5], "")), 0o600) // 3 decisions, key, checkpoint
	expectBroken(t, "the log was cut", "--bundle", bundle, "--witness-key", key, "--checkpoint", cp, path)
	expectBroken(t, "no checkpoint cosigned by a trusted witness", "--bundle", bundle, "--witness-key", key, path)
}

// TestAuditAttackForkAfterWitness: the writer's own SVID key in the
// attacker's hands: the log rewritten (denial removed) and re-signed with
// it from the first line. The witness's checkpoint shows the fork.
func TestAuditAttackForkAfterWitness(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	key, cp := witnessedLog(t, dir, ca, path)
	// The same first line, the denial removed: the tree at the witnessed
	// size differs.
	rewrite(t, path, readRecords(t, path), noDenial, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3})
	expectBroken(t, "does not extend the checkpoint", "--bundle", bundle, "--witness-key", key, "--checkpoint", cp, path)

	// The first line removed too: another log as far as the witness knows.
	os.Remove(path)
	key, cp = witnessedLog(t, dir, ca, path)
	rewrite(t, path, readRecords(t, path), func(r audit.Record) bool { return r.Action.Path != "/kb/a" }, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3})
	expectBroken(t, "is for log", "--bundle", bundle, "--witness-key", key, "--checkpoint", cp, path)
}

// TestAuditUnknownWitnessKey: cosignatures by a key the auditor does not
// trust do not count.
func TestAuditUnknownWitnessKey(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	witnessedLog(t, dir, ca, path)
	_, other, _ := witness.GenerateKey("other-witness.example.org")
	expectBroken(t, "cosignatures by unknown key(s) witness.example.org were not counted", "--bundle", bundle, "--witness-key", other, path)
}

// TestAuditReceipt: a receipt from audit prove verifies offline with the
// bundle and the witness key; a receipt whose record or proof was altered
// does not.
func TestAuditReceipt(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	key, _ := witnessedLog(t, dir, ca, path)
	receipt := filepath.Join(dir, "receipt.json")
	deny := -1
	for i, r := range readRecords(t, path) {
		if r.Decision == "deny" {
			deny = i
		}
	}
	if code, out, errs := runCLI(t, "audit", "prove", "--index", strconv.Itoa(deny), "--out", receipt, path); code != 0 {
		t.Fatalf("prove: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs := runCLI(t, "audit", "verify-receipt", receipt, "--bundle", bundle, "--witness-key", key)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("OK: record seq %d (index %d)", deny+1, deny)) || !strings.Contains(out, "cosigned by witness.example.org") ||
		!strings.Contains(out, "decision: deny") || !strings.Contains(out, "action: http GET /kb/admin") {
		t.Fatalf("verify-receipt: exit %d\n%s\n%s", code, out, errs)
	}
	data, _ := os.ReadFile(receipt)
	var r audit.Receipt
	json.Unmarshal(data, &r)
	r.Record = strings.Replace(r.Record, `"decision":"deny"`, `"decision":"allow"`, 1)
	forged, _ := json.Marshal(r)
	os.WriteFile(receipt, forged, 0o600)
	code, _, errs = runCLI(t, "audit", "verify-receipt", receipt, "--bundle", bundle, "--witness-key", key)
	if code != 1 || !strings.Contains(errs, "the record's proof does not match the checkpoint") {
		t.Fatalf("forged receipt: exit %d\n%s", code, errs)
	}
	_, other, _ := witness.GenerateKey("other-witness.example.org")
	json.Unmarshal(data, &r)
	code, _, errs = runCLI(t, "audit", "verify-receipt", writeFile(t, dir, "r2.json", data), "--bundle", bundle, "--witness-key", other)
	if code != 1 || !strings.Contains(errs, "unknown key") {
		t.Fatalf("receipt, unknown witness: exit %d\n%s", code, errs)
	}
}

// TestAuditAttackSegmentRemoved (issue 13, rotation): a file removed from
// the middle of a rotated log fails `audit verify`, naming the file and
// the missing sequence numbers; the oldest files removed (what retention
// does) verify, with a note on what is known of the deleted lines.
func TestAuditAttackSegmentRemoved(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3, MaxBytes: 2500})
	if err != nil {
		t.Fatal(err)
	}
	for range 30 {
		w.Append(audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow", Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb"}})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := audit.Files(path)
	if len(files) < 4 {
		t.Fatalf("want 4 files or more: %v", files)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, path); code != 0 {
		t.Fatalf("genuine: exit %d\n%s\n%s", code, out, errs)
	}
	middle, _ := os.ReadFile(files[2])
	os.Remove(files[2])
	expectBroken(t, filepath.Base(files[3])+" line 1", "--bundle", bundle, path)
	expectBroken(t, "are missing (a segment was removed from the middle)", "--bundle", bundle, path)
	os.WriteFile(files[2], middle, 0o640)
	os.Remove(files[0])
	code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, path)
	if code != 0 || !strings.Contains(out, "the lines before were deleted (retention)") {
		t.Fatalf("oldest removed: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAuditRetentionWitnessed (issue 13, retention): with max_segments a
// witnessed log keeps 3 files; `audit verify` of them with the witness's
// latest checkpoint passes, and with a checkpoint the witness cosigned
// before retention deleted its lines it passes too, by a consistency
// proof from the tree index; a receipt handed out before still verifies,
// and one for a retained record is made.
func TestAuditRetentionWitnessed(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	wc, vkey, state := witnessed(t, ca)
	key := writeFile(t, dir, "witness.pub", []byte(vkey+"\n"))
	session := func(n int) {
		w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(auditVerifierID), CheckpointEvery: 3, Witness: wc, MaxBytes: 2500, MaxSegments: 3})
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			w.Append(audit.Record{Type: audit.TypeDecision, Peer: testTask.String(), Decision: "allow", Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb"}})
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.WitnessError(); err != nil {
			t.Fatal(err)
		}
	}
	latest := func(name string) string {
		files, _ := filepath.Glob(filepath.Join(state, "*.checkpoint"))
		return writeFile(t, dir, name, mustRead(t, files[0]))
	}
	session(3)
	early, receipt := latest("early.checkpoint"), filepath.Join(dir, "r0.json")
	if code, out, errs := runCLI(t, "audit", "prove", "--index", "0", "--out", receipt, path); code != 0 {
		t.Fatalf("prove: exit %d\n%s\n%s", code, out, errs)
	}
	session(30)
	files, _ := audit.Files(path)
	if len(files) != 3 {
		t.Fatalf("retention kept %v", files)
	}
	code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, "--witness-key", key, "--checkpoint", latest("latest.checkpoint"), path)
	if code != 0 || !strings.Contains(out, "deleted (retention)") {
		t.Fatalf("verify with the latest checkpoint: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, "--witness-key", key, "--checkpoint", early, path); code != 0 {
		t.Fatalf("verify with a checkpoint of deleted lines: exit %d\n%s\n%s", code, out, errs)
	}
	// Given the files one by one (no tree index), the old checkpoint
	// cannot be checked, and the message says why.
	expectBroken(t, "is older than the files given", append([]string{"--bundle", bundle, "--witness-key", key, "--checkpoint", early}, files...)...)
	if code, out, errs := runCLI(t, "audit", "verify-receipt", receipt, "--bundle", bundle, "--witness-key", key); code != 0 || !strings.Contains(out, "OK: record seq 1 (index 0)") {
		t.Fatalf("receipt from before retention: exit %d\n%s\n%s", code, out, errs)
	}
	var seq uint64 // the first decision still in the log
	for _, f := range files {
		for _, r := range readRecords(t, f) {
			if r.Type == audit.TypeDecision && seq == 0 {
				seq = r.Seq
			}
		}
	}
	r1 := filepath.Join(dir, "r1.json")
	if code, out, errs := runCLI(t, "audit", "prove", "--index", strconv.FormatUint(seq-1, 10), "--out", r1, path); code != 0 || errs != "" {
		t.Fatalf("prove a retained record: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "audit", "verify-receipt", r1, "--bundle", bundle, "--witness-key", key); code != 0 {
		t.Fatalf("receipt of a retained record: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAuditProveTreeIndex: `audit prove` answers from the tree index the
// writer keeps beside the log; with the index altered (every stored hash
// flipped) it says so and reads the whole log instead, and the receipt is
// the same and verifies (an altered index never yields a receipt).
func TestAuditProveTreeIndex(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	key, _ := witnessedLog(t, dir, ca, path)
	first, second := filepath.Join(dir, "r1.json"), filepath.Join(dir, "r2.json")
	deny := ""
	for i, r := range readRecords(t, path) {
		if r.Decision == "deny" {
			deny = strconv.Itoa(i)
		}
	}
	code, out, errs := runCLI(t, "audit", "prove", "--index", deny, "--out", first, path)
	if code != 0 || errs != "" {
		t.Fatalf("prove: exit %d\n%s\n%s", code, out, errs)
	}
	idx := audit.TreeIndexPath(path)
	data, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 64; i < len(data); i++ {
		data[i] ^= 0xff
	}
	os.WriteFile(idx, data, 0o640)
	code, out, errs = runCLI(t, "audit", "prove", "--index", deny, "--out", second, path)
	if code != 0 || !strings.Contains(errs, "tree index: its proof for index "+deny+" does not match the checkpoint") || !strings.Contains(errs, "reading the whole log instead") {
		t.Fatalf("prove with an altered index: exit %d\n%s\n%s", code, out, errs)
	}
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	if string(a) != string(b) {
		t.Fatalf("receipts differ:\n%s\n%s", a, b)
	}
	if code, out, errs := runCLI(t, "audit", "verify-receipt", second, "--bundle", bundle, "--witness-key", key); code != 0 || !strings.Contains(out, "decision: deny") {
		t.Fatalf("verify-receipt: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestAuditVerifyConfigPinsSigner: a log re-signed with another workload's
// SVID of the trust domain (not a task) verifies without pins, and fails
// with --config naming the verifier's configuration, whose audit.signer_id
// is pinned; a configuration without one, or with a malformed one, is an
// error naming the file (and line:col).
func TestAuditVerifyConfigPinsSigner(t *testing.T) {
	dir := t.TempDir()
	ca := testca.New(t, testTD, time.Now())
	bundle := writeFile(t, dir, "bundle.pem", ca.BundlePEM())
	path := filepath.Join(dir, "audit.log")
	genuineLog(t, path, ca.CreateX509SVID(auditVerifierID), nil)
	cfg := writeFile(t, dir, "verifier.hcl", []byte("trust_domain = \"example.org\"\npolicy_dir = \"p\"\naudit {\n  path = \"a\"\n  signer_id = \""+auditVerifierID.String()+"\"\n}\n"))
	if code, out, errs := runCLI(t, "audit", "verify", "--bundle", bundle, "--config", cfg, path); code != 0 {
		t.Fatalf("genuine log, pinned by --config: exit %d\n%s\n%s", code, out, errs)
	}
	rewrite(t, path, readRecords(t, path), noDenial, audit.Options{Signer: ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/ci-runner")), CheckpointEvery: 3})
	if code, _, errs := runCLI(t, "audit", "verify", "--bundle", bundle, path); code != 0 {
		t.Fatalf("unpinned: exit %d: %s (any non-task SVID may sign)", code, errs)
	}
	expectBroken(t, "not a pinned signer", "--bundle", bundle, "--config", cfg, path)

	none := writeFile(t, dir, "none.hcl", []byte("trust_domain = \"example.org\"\naudit {\n  path = \"a\"\n}\n"))
	expectBroken(t, "no audit { signer_id = … } to pin", "--bundle", bundle, "--config", none, path)
	bad := writeFile(t, dir, "bad.hcl", []byte("audit {\n  path = \"a\"\n  signer_id = \"verifier\"\n}\n"))
	expectBroken(t, "bad.hcl:3:15: audit.signer_id \"verifier\"", "--bundle", bundle, "--config", bad, path)
}
