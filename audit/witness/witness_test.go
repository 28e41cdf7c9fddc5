package witness_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td   = spiffeid.RequireTrustDomainFromString("example.org")
	vid  = spiffeid.RequireFromString("spiffe://example.org/verifier")
	task = spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
)

// direct calls the witness in-process.
type direct struct{ w *witness.Witness }

func (d direct) Cosign(_ context.Context, req *audit.WitnessRequest) ([]byte, error) {
	return d.w.Add(req)
}

func newWitness(t *testing.T, ca *testca.CA) (*witness.Witness, string) {
	skey, vkey, err := witness.GenerateKey("witness.example.org")
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.New(witness.Config{Key: skey, StateDir: t.TempDir(), Bundle: ca.X509Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	return w, vkey
}

func writeLog(t *testing.T, path string, signer x509svid.Source, w *witness.Witness, clock func() time.Time) *audit.Writer {
	t.Helper()
	lw, err := audit.Open(path, audit.Options{Signer: signer, CheckpointEvery: 2, Witness: direct{w}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		lw.Append(audit.Record{Type: audit.TypeDecision, Peer: task.String(), Decision: "allow"})
		if err := lw.Flush(); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	return lw
}

// TestWitnessCosignsAndExtends: every checkpoint of a log is cosigned, a
// reopened log keeps being cosigned (consistency from the last size), and
// the log verifies with the witness's key and its last checkpoint.
func TestWitnessCosignsAndExtends(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	w, vkey := newWitness(t, ca)
	path := filepath.Join(t.TempDir(), "audit.log")
	lw := writeLog(t, path, ca.CreateX509SVID(vid), w, nil)
	first := lw.WitnessedSize()
	lw = writeLog(t, path, ca.CreateX509SVID(vid), w, nil)
	if err := lw.WitnessError(); err != nil || lw.WitnessedSize() <= first {
		t.Fatalf("reopened log: witnessed size %d (was %d), %v", lw.WitnessedSize(), first, err)
	}
	files, _ := audit.Files(path)
	sum, err := audit.VerifyChain(files)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := w.Latest(sum.Origin)
	if err != nil {
		t.Fatal(err)
	}
	sum, err = audit.Verify(files, audit.VerifyOptions{Bundle: ca.X509Bundle(), WitnessKeys: []string{vkey}, Witnessed: [][]byte{latest}})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Witnessed < 4 || sum.Anchor.TimeSource != "witness witness.example.org" || sum.Unsigned != 0 {
		t.Fatalf("summary %+v %+v", sum, sum.Anchor)
	}
}

// TestWitnessRefuses: a key bound by a task SVID, or by an SVID that has
// expired (the log's clock backdated), is not cosigned; nor is a log that
// does not extend what the witness cosigned before.
func TestWitnessRefuses(t *testing.T) {
	now := time.Now()
	ca := testca.New(t, td, now)
	for name, tc := range map[string]struct {
		signer x509svid.Source
		clock  func() time.Time
		want   string
	}{
		"task SVID":    {ca.CreateX509SVID(task), nil, "task identities are never accepted"},
		"expired SVID": {ca.CreateX509SVID(vid, testca.WithLifetime(now.Add(-90*time.Minute), now.Add(-30*time.Minute))), func() time.Time { return now.Add(-time.Hour) }, "expired"},
	} {
		t.Run(name, func(t *testing.T) {
			w, _ := newWitness(t, ca)
			lw := writeLog(t, filepath.Join(t.TempDir(), "audit.log"), tc.signer, w, tc.clock)
			if err := lw.WitnessError(); err == nil || !strings.Contains(err.Error(), tc.want) || lw.WitnessedSize() != 0 {
				t.Fatalf("witness error %v, witnessed size %d", err, lw.WitnessedSize())
			}
		})
	}
	t.Run("fork", func(t *testing.T) {
		w, _ := newWitness(t, ca)
		dir := t.TempDir()
		path := filepath.Join(dir, "audit.log")
		writeLog(t, path, ca.CreateX509SVID(vid), w, nil)
		data := must(t, path)
		// The current file deleted (and its first line kept, so the origin
		// is the same): the rewritten log does not extend the witnessed one.
		first := data[:strings.IndexByte(data, '\n')+1]
		if err := writeFile(path, first); err != nil {
			t.Fatal(err)
		}
		lw := writeLog(t, path, ca.CreateX509SVID(vid), w, nil)
		// The writer asks again from the witness's size (409), and the
		// witness refuses: the consistency proof does not hold. The writer
		// may be closed before its second request is answered (a loaded
		// machine); either way nothing of the fork is cosigned.
		err := lw.WitnessError()
		forkRefused := err != nil && strings.Contains(err.Error(), "does not extend the one of size") && strings.Contains(err.Error(), "a fork or a rewrite")
		conflict := err != nil && strings.Contains(err.Error(), "the last checkpoint cosigned for this log has size")
		if !forkRefused && !conflict || lw.WitnessedSize() != 0 {
			t.Fatalf("forked log: witness error %v, witnessed size %d", err, lw.WitnessedSize())
		}
	})
}

// lostAnswers cosigns (the witness stores the checkpoint) but the writer
// never gets the answer: what the writer sees when it crashes after the
// witness cosigned and before the cosigned copy reached its log.
type lostAnswers struct{ w *witness.Witness }

func (l lostAnswers) Cosign(_ context.Context, req *audit.WitnessRequest) ([]byte, error) {
	if _, err := l.w.Add(req); err != nil {
		return nil, err
	}
	return nil, errors.New("connection reset by peer")
}

// TestWitnessAheadOfTheLog: the witness cosigned checkpoints whose cosigned
// copies never reached the log; the restarted writer (over HTTP) is
// answered 409 with the witness's size, proves consistency from that size
// and is cosigned again, and the log verifies against the witness's latest
// checkpoint. Before, every later request got 409 and the log was never
// witnessed again.
func TestWitnessAheadOfTheLog(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	w, vkey := newWitness(t, ca)
	path := filepath.Join(t.TempDir(), "audit.log")
	signer := ca.CreateX509SVID(vid)
	lw, err := audit.Open(path, audit.Options{Signer: signer, CheckpointEvery: 2, Witness: lostAnswers{w}})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		lw.Append(audit.Record{Type: audit.TypeDecision, Peer: task.String(), Decision: "allow"})
		lw.Flush()
	}
	lw.Close()
	files, _ := audit.Files(path)
	sum, _ := audit.VerifyChain(files)
	ahead, err := w.Latest(sum.Origin)
	if err != nil || lw.WitnessedSize() != 0 || sum.Witnessed != 0 {
		t.Fatalf("setup: the witness should hold a checkpoint the log never recorded: %v, log witnessed %d", err, sum.Witnessed)
	}

	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	lw, err = audit.Open(path, audit.Options{Signer: signer, CheckpointEvery: 2, Witness: &witness.Client{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		lw.Append(audit.Record{Type: audit.TypeDecision, Peer: task.String(), Decision: "allow"})
		lw.Flush()
	}
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lw.WitnessError(); err != nil || lw.WitnessedSize() == 0 {
		t.Fatalf("after restart: witnessed size %d, %v", lw.WitnessedSize(), err)
	}
	latest, _ := w.Latest(sum.Origin)
	if string(latest) == string(ahead) {
		t.Fatal("the witness did not advance")
	}
	files, _ = audit.Files(path)
	got, err := audit.Verify(files, audit.VerifyOptions{Bundle: ca.X509Bundle(), WitnessKeys: []string{vkey}, Witnessed: [][]byte{ahead, latest}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Witnessed == 0 || got.Anchor.TimeSource != "witness witness.example.org" {
		t.Fatalf("summary %+v", got)
	}
}

// TestClientChecksTheWitnessKey: a client given the witness's key accepts
// its cosignatures and refuses another witness's.
func TestClientChecksTheWitnessKey(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	w, vkey := newWitness(t, ca)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	_, other, _ := witness.GenerateKey("other.example.org")
	for key, ok := range map[string]bool{vkey: true, other: false} {
		c, err := witness.NewClient(srv.URL, key)
		if err != nil {
			t.Fatal(err)
		}
		lw, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 2, Witness: c})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			lw.Append(audit.Record{Type: audit.TypeDecision, Peer: task.String(), Decision: "allow"})
		}
		lw.Close()
		if got := lw.WitnessedSize() > 0; got != ok || (!ok && !strings.Contains(fmt.Sprint(lw.WitnessError()), "not a cosignature by other.example.org")) {
			t.Fatalf("key %s: witnessed %v (%v), want %v", key, got, lw.WitnessError(), ok)
		}
	}
}
