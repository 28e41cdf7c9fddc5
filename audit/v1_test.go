package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestV1LogStillVerifies: a log in the hash-chain v1 format (checkpoints
// signed directly with the SVID, as written before issue 13) verifies,
// labelled as such, under the same signer and time rules; a v2 writer
// continues it and the tree covers the v1 lines.
func TestV1LogStillVerifies(t *testing.T) {
	now := time.Now().UTC()
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), now)
	s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))
	path := filepath.Join(t.TempDir(), "audit.log")
	var out []byte
	prev := GenesisPrev
	for i := uint64(1); i <= 5; i++ {
		rec := Record{Seq: i, Time: now, Type: TypeDecision, Decision: "allow", Prev: prev}
		if i == 5 {
			rec = Record{Seq: i, Time: now, Type: TypeCheckpoint, Signer: s.ID.String(), Chain: [][]byte{s.Certificates[0].Raw}, Prev: prev}
			sig, err := signPayload(s.PrivateKey, checkpointPayload(rec.Seq, rec.Time, rec.Prev))
			if err != nil {
				t.Fatal(err)
			}
			rec.Signature = sig
		}
		line := rec.appendJSON(nil)
		out = append(append(out, line...), '\n')
		prev = lineHash(line)
	}
	os.WriteFile(path, out, 0o600)
	opts := VerifyOptions{Bundle: ca.X509Bundle()}
	sum, err := Verify([]string{path}, opts)
	if err != nil || sum.Format != FormatV1 || sum.Checkpoints != 1 {
		t.Fatalf("v1: %+v %v", sum, err)
	}
	w, err := Open(path, Options{Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(Record{Type: TypeDecision, Decision: "deny"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err = Verify([]string{path}, opts)
	if err != nil || sum.Format != FormatV1V2 || sum.Checkpoints != 2 || sum.Records != 8 {
		t.Fatalf("v1 continued as v2: %+v %v", sum, err)
	}
}
