package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/mod/sumdb/tlog"
)

// direct calls a witness in-process.
type direct struct{ w *witness.Witness }

func (d direct) Cosign(_ context.Context, req *audit.WitnessRequest) ([]byte, error) {
	return d.w.Add(req)
}

func newTestWitness(t *testing.T, ca *testca.CA) (*witness.Witness, string) {
	t.Helper()
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

// writeFlushed appends n decisions, flushing after each so that a witness
// gets its checkpoints as they come.
func writeFlushed(t *testing.T, path string, opts audit.Options, n int) {
	t.Helper()
	w, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Append(decision(i)); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.IndexError(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// proveAll checks that ProveIndexed gives, for every index of the log,
// the receipt Prove gives (or fails where it fails), and that it verifies.
func proveAll(t *testing.T, path string, opts audit.VerifyOptions) int {
	t.Helper()
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyChain(files)
	if err != nil {
		t.Fatal(err)
	}
	proved := 0
	for i := sum.Start; i < sum.Start+uint64(sum.Records); i++ {
		slow, serr := audit.Prove(files, i)
		fast, ferr := audit.ProveIndexed(path, i)
		if serr != nil {
			if ferr == nil {
				t.Fatalf("index %d: Prove failed (%v) but ProveIndexed gave a receipt", i, serr)
			}
			continue
		}
		if ferr != nil {
			t.Fatalf("index %d: %v", i, ferr)
		}
		if !reflect.DeepEqual(slow, fast) {
			t.Fatalf("index %d: ProveIndexed\n%+v\nProve\n%+v", i, fast, slow)
		}
		if _, err := audit.VerifyReceipt(fast, opts); err != nil {
			t.Fatalf("index %d: %v", i, err)
		}
		proved++
	}
	return proved
}

// TestProveIndexedMatchesProve: the receipts from the tree index are
// Prove's, for every record of a rotated log written in two sessions, with
// a witness (the last witnessed checkpoint) and without (the last one).
func TestProveIndexedMatchesProve(t *testing.T) {
	for _, withWitness := range []bool{true, false} {
		t.Run(map[bool]string{true: "witness", false: "no-witness"}[withWitness], func(t *testing.T) {
			ca := testca.New(t, td, time.Now().Add(-time.Minute))
			path := filepath.Join(t.TempDir(), "audit.log")
			opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 7, MaxBytes: 3000}
			vopts := audit.VerifyOptions{Bundle: ca.X509Bundle()}
			if withWitness {
				w, vkey := newTestWitness(t, ca)
				opts.Witness, vopts.WitnessKeys = direct{w}, []string{vkey}
			}
			writeFlushed(t, path, opts, 30)
			writeFlushed(t, path, opts, 25)
			if files, _ := audit.Files(path); len(files) < 3 {
				t.Fatalf("want a rotated log, got %v", files)
			}
			if n := proveAll(t, path, vopts); n < 55 {
				t.Fatalf("only %d receipts", n)
			}
		})
	}
}

// TestTreeIndexNeverTrusted: an index whose hashes or header were altered,
// that was cut short or that belongs to another log makes ProveIndexed
// fail (an *IndexError), never give a receipt; a node altered outside a
// proof's path does not matter to that proof. The writer's next Open
// rebuilds the index, after which every receipt is Prove's again.
func TestTreeIndexNeverTrusted(t *testing.T) {
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 5, MaxBytes: 4000}
	vopts := audit.VerifyOptions{Bundle: ca.X509Bundle()}
	writeFlushed(t, path, opts, 40)
	idx := audit.TreeIndexPath(path)
	good, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.log")
	writeFlushed(t, other, opts, 40)
	foreign, _ := os.ReadFile(audit.TreeIndexPath(other))

	const header = 64
	at := func(level int, n int64) int64 { return header + 32*tlog.StoredHashIndex(level, n) }
	tests := []struct {
		name  string
		edit  func(b []byte) []byte
		index uint64
		want  string
	}{
		{"sibling leaf hash altered", func(b []byte) []byte { b[at(0, 13)] ^= 1; return b }, 12, "does not match the checkpoint"},
		{"own leaf hash altered", func(b []byte) []byte { b[at(0, 12)] ^= 1; return b }, 13, "does not match the checkpoint"},
		{"interior node altered", func(b []byte) []byte { b[at(3, 0)+5] ^= 0x80; return b }, 9, "does not match the checkpoint"},
		{"checkpoint seq points at a decision", func(b []byte) []byte { b[23] = 3; return b }, 0, "is not the checkpoint record"},
		{"checkpoint size changed", func(b []byte) []byte { b[31]--; return b }, 0, "is not for tree size"},
		{"bad magic", func(b []byte) []byte { b[0] = 'x'; return b }, 0, "bad header"},
		{"cut short", func(b []byte) []byte { return b[:header+32*20] }, 3, "covers index"},
		{"another log's index", func([]byte) []byte { return append([]byte(nil), foreign...) }, 3, "does not match the checkpoint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(idx, tc.edit(append([]byte(nil), good...)), 0o640); err != nil {
				t.Fatal(err)
			}
			r, err := audit.ProveIndexed(path, tc.index)
			var ie *audit.IndexError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ProveIndexed = %v, %v; want an IndexError %q", r, err, tc.want)
			}
			// The writer's next Open rebuilds it.
			w, err := audit.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			proveAll(t, path, vopts)
			good, _ = os.ReadFile(idx)
		})
	}
	// A node off the proof's path: the proof of leaf 0 in the last
	// checkpoint's tree does not use leaf 30's hash.
	b := append([]byte(nil), good...)
	b[at(0, 30)] ^= 1
	os.WriteFile(idx, b, 0o640)
	r, err := audit.ProveIndexed(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyReceipt(r, vopts); err != nil {
		t.Fatal(err)
	}
}

// TestTreeIndexAtCheckpoints: the writer adds records' hashes to the tree
// index once a checkpoint after them is durable (not at every fsync), so
// a record a durable checkpoint covers is proven from the index of a log
// still being written; after Close the index holds every line.
func TestTreeIndexAtCheckpoints(t *testing.T) {
	now := time.Now()
	ca := testca.New(t, td, now.Add(-time.Minute))
	s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{Signer: s, CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 {
		if err := w.Append(decision(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, index := range []uint64{3, 12} {
		r, err := audit.ProveIndexed(path, index)
		if err != nil {
			t.Fatalf("index %d, log still open: %v", index, err)
		}
		if _, err := audit.VerifyReceipt(r, audit.VerifyOptions{Bundle: ca.X509Bundle()}); err != nil {
			t.Fatalf("index %d: %v", index, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	n := int64(len(lines(t, path)))
	st, err := os.Stat(audit.TreeIndexPath(path))
	if err != nil {
		t.Fatal(err)
	}
	if want := 64 + tlog.StoredHashCount(n)*32; st.Size() != want {
		t.Fatalf("index of %d lines after Close: %d bytes, want %d", n, st.Size(), want)
	}
	// Without a Signer (no checkpoint line): Close writes what waits.
	path = filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{}, 10)
	if st, err = os.Stat(audit.TreeIndexPath(path)); err != nil {
		t.Fatal(err)
	}
	if want := 64 + tlog.StoredHashCount(10)*32; st.Size() != want {
		t.Fatalf("index of 10 unsigned lines after Close: %d bytes, want %d", st.Size(), want)
	}
}
