package audit

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestProveIndexedRefusesUnchainedLine: a log whose first line was
// rewritten ("deny" → "allow") and then signed over by a checkpoint (what
// a writer that did not check the chain at Open made of it: the tree and
// its index hold the rewritten line, the next line's prev still names the
// original). ProveIndexed must not hand out a receipt for the rewritten
// line, nor for the line after it.
func TestProveIndexedRefusesUnchainedLine(t *testing.T) {
	now := time.Now().UTC()
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), now.Add(-time.Minute))
	s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))
	path := filepath.Join(t.TempDir(), "audit.log")
	opts := Options{Signer: s, Clock: func() time.Time { return now }}
	opts.defaults()
	// The laundering writer, driven step by step (no loop goroutine).
	w := newWriter(path, opts)
	if err := w.recover(); err != nil {
		t.Fatal(err)
	}
	w.commit()
	deny := Record{Seq: 1, Time: now, Type: TypeDecision, Decision: "deny", Prev: GenesisPrev}
	denyLine := deny.appendJSON(nil)
	if err := w.write(&Record{Time: now, Type: TypeDecision, Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	w.prev = [32]byte(LeafHash(denyLine)) // the next line chains to the original
	for range 3 {
		if err := w.write(&Record{Time: now, Type: TypeDecision, Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	w.f.Close()
	w.idx.close()

	vopts := VerifyOptions{Bundle: ca.X509Bundle()}
	if r, err := ProveIndexed(path, 2); err != nil {
		t.Fatalf("a line that chains: %v", err)
	} else if _, err := VerifyReceipt(r, vopts); err != nil {
		t.Fatalf("a line that chains: %v", err)
	}
	for _, index := range []uint64{0, 1} {
		r, err := ProveIndexed(path, index)
		if err == nil {
			_, verr := VerifyReceipt(r, vopts)
			t.Fatalf("index %d: ProveIndexed gave a receipt for a line out of the chain (VerifyReceipt: %v)", index, verr)
		}
		t.Logf("index %d refused: %v", index, err)
	}
	if _, err := Open(path, Options{Signer: s}); err == nil {
		t.Fatal("Open continued a log whose chain is broken")
	}
}
