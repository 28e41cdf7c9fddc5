package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"golang.org/x/mod/sumdb/tlog"
)

// retainedLog writes a witnessed log that rotates every ~3000 bytes and
// keeps 3 files, in three sessions; receipts for the first records are
// made (and the witness's checkpoint taken) before retention deletes
// their file.
func retainedLog(t *testing.T) (path string, vopts audit.VerifyOptions, early []*audit.Receipt, oldCheckpoint, latest []byte, opts audit.Options) {
	t.Helper()
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	wit, vkey := newTestWitness(t, ca)
	path = filepath.Join(t.TempDir(), "audit.log")
	opts = audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 5, MaxBytes: 3000, MaxSegments: 3, Witness: direct{wit}}
	vopts = audit.VerifyOptions{Bundle: ca.X509Bundle(), WitnessKeys: []string{vkey}}
	writeFlushed(t, path, opts, 6)
	files, _ := audit.Files(path)
	for _, i := range []uint64{0, 1, 2} {
		r, err := audit.Prove(files, i)
		if err != nil {
			t.Fatal(err)
		}
		early = append(early, r)
	}
	sum, err := audit.VerifyChain(files)
	if err != nil {
		t.Fatal(err)
	}
	if oldCheckpoint, err = wit.Latest(sum.Origin); err != nil {
		t.Fatal(err)
	}
	writeFlushed(t, path, opts, 40)
	writeFlushed(t, path, opts, 40)
	if latest, err = wit.Latest(sum.Origin); err != nil {
		t.Fatal(err)
	}
	return path, vopts, early, oldCheckpoint, latest, opts
}

// TestRetentionKeepsProofsValid (issue 13, rotation and retention): with
// max_segments = 3 the oldest files are deleted; the three left verify on
// their own (the first starts with a segment record carrying the tree
// state) and extend the witness's latest checkpoint; receipts handed out
// before their file was deleted still verify offline; every record still
// in the log proves (from the tree index and by reading the log); a
// deleted record is named as such; the writer reopens the retained log and
// the witness keeps cosigning it.
func TestRetentionKeepsProofsValid(t *testing.T) {
	path, vopts, early, oldCheckpoint, latest, opts := retainedLog(t)
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("retention kept %d files, want 3: %v", len(files), files)
	}
	first, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(first), `{"seq":`) || !strings.Contains(strings.SplitN(string(first), "\n", 2)[0], `"type":"segment"`) {
		t.Fatalf("the first retained file does not start with a segment record:\n%.300s", first)
	}

	withLatest := vopts
	withLatest.Witnessed = [][]byte{latest}
	sum, err := audit.Verify(files, withLatest)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Start == 0 || sum.Witnessed == 0 || sum.Anchor.TimeSource != "witness witness.example.org" || sum.Unsigned != 0 {
		t.Fatalf("summary %+v anchor %+v", sum, sum.Anchor)
	}

	for _, r := range early {
		if r.Index >= sum.Start {
			t.Fatalf("receipt %d: its record was not deleted (the log starts at %d)", r.Index, sum.Start)
		}
		res, err := audit.VerifyReceipt(r, vopts)
		if err != nil {
			t.Fatalf("receipt for index %d, handed out before retention: %v", r.Index, err)
		}
		if res.Record.Seq != r.Index+1 {
			t.Fatalf("receipt proves seq %d", res.Record.Seq)
		}
	}
	if _, err := audit.Prove(files, 0); err == nil || !strings.Contains(err.Error(), "retention deleted the lines before") {
		t.Fatalf("Prove of a deleted record = %v", err)
	}
	if n, want := proveAll(t, path, vopts), decisionsIn(t, files); n < want || want == 0 {
		t.Fatalf("%d receipts from the retained files, which hold %d decisions", n, want)
	}

	// The witness's checkpoint from before retention covers deleted lines
	// only: it cannot be checked against these files, and the error says so.
	old := vopts
	old.Witnessed = [][]byte{oldCheckpoint}
	if _, err := audit.Verify(files, old); err == nil || !strings.Contains(err.Error(), "is older than the files given") {
		t.Fatalf("Verify with a checkpoint of deleted lines = %v", err)
	}
	// With the tree index, a consistency proof from its hashes shows the
	// files extend it; an index altered where the proof reads fails.
	old.TreeIndex = audit.TreeIndexPath(path)
	if _, err := audit.Verify(files, old); err != nil {
		t.Fatalf("Verify with a checkpoint of deleted lines and the tree index: %v", err)
	}
	idx, _ := os.ReadFile(old.TreeIndex)
	altered := append([]byte(nil), idx...)
	for i := int64(64); i < 64+32*tlog.StoredHashCount(int64(sum.Start)); i++ {
		altered[i] ^= 0xff // every hash of the deleted lines
	}
	os.WriteFile(old.TreeIndex, altered, 0o640)
	if _, err := audit.Verify(files, old); err == nil || !strings.Contains(err.Error(), "the tree index does not show this log extends it") {
		t.Fatalf("Verify with an altered tree index = %v", err)
	}
	os.WriteFile(old.TreeIndex, idx, 0o640)

	// The writer reopens from the segment record and continues (its tree
	// index deleted: rebuilt from the segment record on); the witness
	// cosigns the continuation.
	os.Remove(audit.TreeIndexPath(path))
	w, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Append(decision(i))
		w.Flush()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WitnessError(); err != nil || w.WitnessedSize() <= sum.Anchor.Size {
		t.Fatalf("after reopening: witnessed size %d (was %d), %v", w.WitnessedSize(), sum.Anchor.Size, err)
	}
	files, _ = audit.Files(path)
	if sum2, err := audit.Verify(files, vopts); err != nil || sum2.LastSeq <= sum.LastSeq || sum2.Origin != sum.Origin {
		t.Fatalf("after reopening: %+v %v", sum2, err)
	}
	if n, want := proveAll(t, path, vopts), decisionsIn(t, files); n < want || want < 3 {
		t.Fatalf("after reopening: %d receipts from files holding %d decisions", n, want)
	}
}

// TestSegmentAttacks: a file removed from the middle of a rotated log,
// files out of order, and a segment record whose tree state was altered
// are each named; removing the oldest files is retention and verifies.
func TestSegmentAttacks(t *testing.T) {
	ca := testca.New(t, td, t0)
	opts := audit.Options{Clock: clock(), Signer: ca.CreateX509SVID(vid), CheckpointEvery: 4, MaxBytes: 2500}
	vopts := audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(time.Minute)}
	setup := func(t *testing.T) []string {
		path := filepath.Join(t.TempDir(), "audit.log")
		write(t, path, opts, 40)
		files, _ := audit.Files(path)
		if len(files) < 5 {
			t.Fatalf("want 5 files or more, got %v", files)
		}
		if _, err := audit.Verify(files, vopts); err != nil {
			t.Fatal(err)
		}
		return files
	}
	expect := func(t *testing.T, files []string, file string, line int, reason string) {
		t.Helper()
		_, err := audit.Verify(files, vopts)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.File != file || ve.Line != line || !strings.Contains(ve.Reason, reason) {
			t.Fatalf("Verify = %v; want %s:%d %q", err, file, line, reason)
		}
	}
	t.Run("removed from the middle", func(t *testing.T) {
		files := setup(t)
		os.Remove(files[2])
		left, _ := audit.Files(files[len(files)-1])
		expect(t, left, files[3], 1, "are missing (a segment was removed from the middle)")
	})
	t.Run("out of order", func(t *testing.T) {
		files := setup(t)
		swapped := append([]string(nil), files...)
		swapped[2], swapped[3] = swapped[3], swapped[2]
		expect(t, swapped, files[3], 1, "are missing")
		expect(t, append(append([]string(nil), files...), files[1]), files[1], 1, "the files are out of order or one is given twice")
	})
	t.Run("segment record altered", func(t *testing.T) {
		files := setup(t)
		data, _ := os.ReadFile(files[2])
		lines := strings.SplitN(string(data), "\n", 2)
		// One hash of the carried tree state replaced (valid base64).
		i := strings.Index(lines[0], `"tree":["`) + len(`"tree":["`)
		forged := lines[0][:i] + "AAAA" + lines[0][i+4:]
		os.WriteFile(files[2], []byte(forged+"\n"+lines[1]), 0o600)
		// With the files before it: the state differs from theirs.
		expect(t, files, files[2], 1, "segment record: its tree state does not match the lines before it")
		// The attacker also chains the file's lines to the forged one.
		rest := strings.Split(strings.TrimSuffix(lines[1], "\n"), "\n")
		prev := forged
		for j, l := range rest {
			sum := sha256.Sum256([]byte(prev))
			k := strings.LastIndex(l, `"prev":"`)
			rest[j] = l[:k] + `"prev":"sha256:` + hex.EncodeToString(sum[:]) + `"}`
			prev = rest[j]
		}
		os.WriteFile(files[2], []byte(forged+"\n"+strings.Join(rest, "\n")+"\n"), 0o600)
		// With the files before it: the state differs from theirs.
		expect(t, files, files[2], 1, "segment record: its tree state does not match the lines before it")
		// Without them (as after retention): the first checkpoint's root
		// does not match the forged state.
		_, err := audit.Verify(files[2:], vopts)
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.File != files[2] || !strings.Contains(ve.Reason, "root hash does not match") {
			t.Fatalf("Verify from the forged segment = %v", err)
		}
	})
	t.Run("oldest removed (retention)", func(t *testing.T) {
		files := setup(t)
		sum, err := audit.Verify(files[2:], vopts)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Start == 0 || sum.Files != len(files)-2 {
			t.Fatalf("summary %+v", sum)
		}
	})
	t.Run("first file missing, no segment record", func(t *testing.T) {
		files := setup(t)
		data, _ := os.ReadFile(files[1])
		_, rest, _ := strings.Cut(string(data), "\n") // drop its segment record too
		os.WriteFile(files[1], []byte(rest), 0o600)
		expect(t, files[1:], files[1], 1, "without a segment record: its first file(s) are missing")
	})
}

// TestRotateInterval: a file is rotated once its first line is
// RotateInterval old, whatever its size; every file after the first starts
// with a segment record and the log verifies.
func TestRotateInterval(t *testing.T) {
	ca := testca.New(t, td, t0)
	n := 0
	clk := func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{Clock: clk, Signer: ca.CreateX509SVID(vid), CheckpointEvery: 4, MaxBytes: -1, RotateInterval: 20 * time.Second}, 30)
	files, _ := audit.Files(path)
	if len(files) < 2 {
		t.Fatalf("no rotation by age: %v", files)
	}
	for _, f := range files[1:] {
		data, _ := os.ReadFile(f)
		if !strings.Contains(strings.SplitN(string(data), "\n", 2)[0], `"type":"segment"`) {
			t.Fatalf("%s does not start with a segment record", f)
		}
	}
	if _, err := audit.Verify(files, audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

// decisionsIn counts the decision records in files.
func decisionsIn(t *testing.T, files []string) int {
	t.Helper()
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(data), `"type":"decision"`)
	}
	return n
}
