package audit_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
)

// TestReviewReopenLaundersRewrittenLine: a decision line, already under a
// signed checkpoint, is rewritten on disk while the writer is stopped
// ("deny" → "allow"). The next writer must not sign a checkpoint over the
// altered line, and no receipt for it may verify.
func TestReviewReopenLaundersRewrittenLine(t *testing.T) {
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 3}
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rec := decision(i)
		if i == 0 {
			rec.Decision = "deny"
		}
		w.Append(rec)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	i := bytes.Index(data, []byte(`"decision":"deny"`))
	if i < 0 {
		t.Fatal("no deny line")
	}
	data = bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
	os.WriteFile(path, data, 0o600)

	w, err = audit.Open(path, opts)
	if err != nil {
		t.Logf("reopen refused (secure): %v", err)
		return
	}
	w.Append(decision(9))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, verr := audit.Verify([]string{path}, audit.VerifyOptions{Bundle: ca.X509Bundle()})
	t.Logf("audit verify of the whole log: %v", verr)
	if _, perr := audit.Prove([]string{path}, 0); perr != nil {
		t.Logf("Prove (whole log) refuses: %v", perr)
	}
	r, err := audit.ProveIndexed(path, 0)
	if err != nil {
		t.Logf("ProveIndexed refused (secure): %v", err)
		return
	}
	res, err := audit.VerifyReceipt(r, audit.VerifyOptions{Bundle: ca.X509Bundle()})
	if err == nil {
		t.Fatalf("a receipt for the rewritten line verifies: decision %q (the writer signed a checkpoint over it)", res.Record.Decision)
	}
}
