package audit_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// lines reads a log file's lines (without their newlines).
func lines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func prevOf(t *testing.T, line []byte) string {
	t.Helper()
	var r struct {
		Prev string `json:"prev"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		t.Fatal(err)
	}
	return r.Prev
}

// TestPrevIsTheLeafHash: a writer names the line before by its RFC 6962
// leaf hash ("leaf:<hex>"), the hash the Merkle tree has of it, so that it
// hashes every line once; the first line of a log keeps GenesisPrev.
func TestPrevIsTheLeafHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{}, 5)
	ls := lines(t, path)
	if len(ls) != 5 {
		t.Fatalf("%d lines", len(ls))
	}
	if got := prevOf(t, ls[0]); got != audit.GenesisPrev {
		t.Fatalf("line 1: prev %s, want %s", got, audit.GenesisPrev)
	}
	for i := 1; i < len(ls); i++ {
		if got, want := prevOf(t, ls[i]), "leaf:"+hex.EncodeToString(audit.LeafHash(ls[i-1])); got != want {
			t.Fatalf("line %d: prev %s, want %s", i+1, got, want)
		}
	}
	if _, err := audit.VerifyChain([]string{path}); err != nil {
		t.Fatal(err)
	}
}

// TestSHA256PrevLogsStillVerify: a log written before writers named the
// line before by its leaf hash (testdata/sha256-prev: every "prev" is
// "sha256:<hex of the line>", written by the writer of commit c105ced)
// still verifies; a writer continues it (its lines name their
// predecessors by leaf hash, the first of them the last old line), and
// the mixed log verifies, proves (old records, the last old one, new
// ones) and still catches an altered old line.
func TestSHA256PrevLogsStillVerify(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	fixture := filepath.Join("testdata", "sha256-prev")
	pem, err := os.ReadFile(filepath.Join(fixture, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	old, err := x509bundle.Parse(td, pem)
	if err != nil {
		t.Fatal(err)
	}
	written := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	sum, err := audit.Verify([]string{filepath.Join(fixture, "audit.log")}, audit.VerifyOptions{Bundle: old, Now: written.Add(time.Minute)})
	if err != nil {
		t.Fatalf("the old log: %v", err)
	}
	if sum.Records != 16 || sum.Format != audit.FormatV2 {
		t.Fatalf("the old log: %+v", sum)
	}

	// Continued by this writer, with another CA's SVID.
	later := written.Add(2 * time.Minute)
	ca := testca.New(t, td, later.Add(-time.Minute))
	s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))
	data, err := os.ReadFile(filepath.Join(fixture, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	clock := later
	w, err := audit.Open(path, audit.Options{Signer: s, CheckpointEvery: 4, Clock: func() time.Time { clock = clock.Add(time.Millisecond); return clock }})
	if err != nil {
		t.Fatalf("Open of the old log: %v", err)
	}
	for i := range 6 {
		if err := w.Append(decision(100 + i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, path)
	if got, want := prevOf(t, ls[16]), "leaf:"+hex.EncodeToString(audit.LeafHash(ls[15])); got != want {
		t.Fatalf("the first new line: prev %s, want %s", got, want)
	}
	if !strings.HasPrefix(prevOf(t, ls[15]), "sha256:") {
		t.Fatalf("the last old line was rewritten: %s", ls[15])
	}
	both := x509bundle.FromX509Authorities(td, append(old.X509Authorities(), []*x509.Certificate{ca.Cert()}...))
	vopts := audit.VerifyOptions{Bundle: both, Now: later.Add(time.Minute)}
	sum, err = audit.Verify([]string{path}, vopts)
	if err != nil {
		t.Fatalf("the continued log: %v", err)
	}
	if sum.Records != len(ls) {
		t.Fatalf("the continued log: %+v, %d lines", sum, len(ls))
	}
	for _, index := range []uint64{1, 14, 15, 16, uint64(len(ls) - 3)} {
		r, err := audit.ProveIndexed(path, index)
		if err != nil {
			t.Fatalf("ProveIndexed %d: %v", index, err)
		}
		if _, err := audit.VerifyReceipt(r, vopts); err != nil {
			t.Fatalf("receipt %d: %v", index, err)
		}
	}
	// And it reopens (Open checks the chain of both forms).
	w, err = audit.Open(path, audit.Options{Signer: s, Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatalf("reopening the continued log: %v", err)
	}
	w.Close()

	// An old line altered: the next line's sha256 prev no longer names it.
	altered := bytes.Replace(data, []byte(`"path":"/kb/3"`), []byte(`"path":"/kb/9"`), 1)
	bad := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(bad, altered, 0o640)
	if _, err := audit.VerifyChain([]string{bad}); err == nil || !strings.Contains(err.Error(), "prev hash does not match") {
		t.Fatalf("an altered old line: %v", err)
	}
}

// TestLeafPrevCatchesAlteredLines: with prev naming the leaf hash, an
// altered line, a "prev" in the other form that names the same line's
// bytes with a different hash, and a leaf prev on the first line all fail.
func TestLeafPrevCatchesAlteredLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{}, 4)
	data, _ := os.ReadFile(path)
	ls := lines(t, path)
	for name, mutate := range map[string]func() []byte{
		"altered line": func() []byte {
			return bytes.Replace(data, []byte(`"path":"/kb/1"`), []byte(`"path":"/kb/7"`), 1)
		},
		"leaf prev of the line's sha256": func() []byte {
			sum := sha256hex(ls[1])
			return bytes.Replace(data, []byte(prevOf(t, ls[2])), []byte("leaf:"+sum), 1)
		},
		"truncated leaf prev": func() []byte {
			p := prevOf(t, ls[2])
			return bytes.Replace(data, []byte(p), []byte(p[:len(p)-2]), 1)
		},
		"leaf prev on the first line": func() []byte {
			return bytes.Replace(data, []byte(audit.GenesisPrev), []byte("leaf:"+hex.EncodeToString(audit.LeafHash(nil))), 1)
		},
	} {
		bad := filepath.Join(t.TempDir(), "audit.log")
		os.WriteFile(bad, mutate(), 0o640)
		if _, err := audit.VerifyChain([]string{bad}); err == nil || !strings.Contains(err.Error(), "prev hash does not match") {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := audit.Open(bad, audit.Options{}); err == nil {
			t.Errorf("%s: Open continued it", name)
		}
	}
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
