package audit_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	td  = spiffeid.RequireTrustDomainFromString("example.org")
	t0  = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	vid = spiffeid.RequireFromString("spiffe://example.org/verifier")
)

// clock returns a deterministic clock that ticks one millisecond per call.
func clock() func() time.Time {
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n) * time.Millisecond) }
}

func decision(i int) audit.Record {
	return audit.Record{
		Type: audit.TypeDecision, Peer: "spiffe://example.org/agent/researcher/task/T-42", Serial: "2a",
		Claims:   []byte(`{"v":1,"agent":"researcher"}`),
		Action:   &audit.Action{Kind: "http", Method: "GET", Path: "/kb/" + strconv.Itoa(i)},
		Decision: "allow", Rules: []string{"read-kb (kb.hcl:3)"}, PolicyDigest: "sha256:00",
	}
}

func write(t *testing.T, path string, opts audit.Options, n int) {
	t.Helper()
	w, err := audit.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Append(decision(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestChainVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{Clock: clock()}, 10)
	write(t, path, audit.Options{Clock: clock()}, 5) // reopen continues the chain
	sum, err := audit.VerifyChain([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 15 || sum.LastSeq != 15 || sum.Checkpoints != 0 || sum.Format != audit.FormatV2 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestTamperingNamesFirstBrokenLine(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(lines []string) []string
		line   int
		reason string
	}{
		{"edited decision", func(l []string) []string {
			l[3] = strings.Replace(l[3], `"decision":"allow"`, `"decision":"deny"`, 1)
			return l
		}, 5, "prev hash does not match"},
		{"removed line", func(l []string) []string { return append(l[:2], l[3:]...) }, 3, "sequence number 4, expected 3"},
		{"swapped lines", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, 2, "sequence number 3, expected 2"},
		{"garbage line", func(l []string) []string { l[6] = "{not json"; return l }, 7, "not a record"},
		{"unknown field", func(l []string) []string {
			l[0] = strings.Replace(l[0], `{"seq":1`, `{"seq":1,"x":1`, 1)
			return l
		}, 1, "not a record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			write(t, path, audit.Options{Clock: clock()}, 8)
			data, _ := os.ReadFile(path)
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			os.WriteFile(path, []byte(strings.Join(tc.edit(lines), "\n")+"\n"), 0o600)
			_, err := audit.VerifyChain([]string{path})
			var ve *audit.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a VerifyError", err)
			}
			if ve.Line != tc.line || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("got line %d %q, want line %d %q", ve.Line, ve.Reason, tc.line, tc.reason)
			}
		})
	}
}

func TestSignedCheckpoints(t *testing.T) {
	ca := testca.New(t, td, t0)
	signer := ca.CreateX509SVID(vid)
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{Clock: clock(), Signer: signer, CheckpointEvery: 4}, 10)
	opts := audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(time.Minute)}

	sum, err := audit.Verify([]string{path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	// 4 + key + ckpt + 4 + key + ckpt + 2 + key + ckpt on Close.
	if sum.Records != 16 || sum.Checkpoints != 3 || sum.Unsigned != 0 || len(sum.Signers) != 1 || sum.Signers[0] != vid.String() ||
		sum.Anchor == nil || sum.Anchor.Seq != 16 || sum.Anchor.Size != 15 || sum.Anchor.TimeSource != "verification time" {
		t.Fatalf("summary %+v", sum)
	}

	// Another CA's bundle: the key records are not vouched for.
	other := testca.New(t, td, t0)
	_, err = audit.Verify([]string{path}, audit.VerifyOptions{Bundle: other.X509Bundle(), Now: opts.Now})
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Line != 5 || !strings.Contains(ve.Reason, "key record: x509svid: could not verify leaf certificate") {
		t.Fatalf("foreign bundle: %v", err)
	}

	// A key record whose signature was altered, with the chain of the
	// trusted key: the signature fails.
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	forged := strings.Replace(lines[4], `"sig":"`, `"sig":"AAAA`, 1)
	os.WriteFile(path, []byte(strings.Join(append(append(lines[:4:4], forged), lines[5:]...), "\n")+"\n"), 0o600)
	_, err = audit.Verify([]string{path}, opts)
	if !errors.As(err, &ve) || ve.Line != 5 || !strings.Contains(ve.Reason, "signature does not verify") {
		t.Fatalf("forged signature: %v", err)
	}
}

func TestTornTailIsTruncatedOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, audit.Options{Clock: clock()}, 3)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":4,"time":"2026-11-29T10:00:00Z","type":"deci`)
	f.Close()
	w, err := audit.Open(path, audit.Options{Clock: clock()})
	if err != nil {
		t.Fatal(err)
	}
	if w.RecoveredBytes() == 0 {
		t.Fatal("torn tail not reported")
	}
	w.Append(decision(4))
	w.Close()
	sum, err := audit.VerifyChain([]string{path})
	if err != nil || sum.Records != 4 {
		t.Fatalf("after recovery: %+v %v", sum, err)
	}
}

func TestRotationKeepsChain(t *testing.T) {
	ca := testca.New(t, td, t0)
	path := filepath.Join(t.TempDir(), "audit.log")
	opts := audit.Options{Clock: clock(), MaxBytes: 2000, Signer: ca.CreateX509SVID(vid), CheckpointEvery: 7}
	write(t, path, opts, 20)
	write(t, path, opts, 20)
	files, err := audit.Files(path)
	if err != nil || len(files) < 4 || files[len(files)-1] != path {
		t.Fatalf("files %v %v", files, err)
	}
	opts2 := audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(time.Minute)}
	sum, err := audit.Verify(files, opts2)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != len(files) || sum.Records < 40 || sum.Unsigned != 0 {
		t.Fatalf("summary %+v", sum)
	}
	// Dropping a middle file breaks the chain at the next file's first line.
	_, err = audit.Verify(append(files[:1:1], files[2:]...), opts2)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.File != files[2] || ve.Line != 1 {
		t.Fatalf("missing file: %v", err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	w, err := audit.Open(filepath.Join(t.TempDir(), "a.log"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Append(decision(0)); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := w.Flush(); !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
}

func TestParseDurability(t *testing.T) {
	for in, want := range map[string]audit.Durability{"": audit.SyncBatch, "batch": audit.SyncBatch, "every": audit.SyncEvery, "none": audit.SyncNone} {
		if got, err := audit.ParseDurability(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := audit.ParseDurability("sometimes"); err == nil {
		t.Error("bad durability accepted")
	}
}

// TestCrashLosesOnlyTheUnsyncedBatch kills a writer process with SIGKILL
// while it appends; every record it had flushed must survive and the log
// must verify and continue after reopening.
func TestCrashLosesOnlyTheUnsyncedBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
	cmd.Env = append(os.Environ(), "AUDIT_HELPER_PATH="+path)
	var out bytes.Buffer
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The helper prints the number of records it has flushed, one line per
	// flush; kill it after it reported 300.
	acked := 0
	buf := make([]byte, 64)
	var line []byte
	for acked < 300 {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("helper ended early: %v\n%s", err, out.String())
		}
		for _, b := range buf[:n] {
			if b == '\n' {
				acked, _ = strconv.Atoi(string(line))
				line = line[:0]
				continue
			}
			line = append(line, b)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(decision(-1))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyChain([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records < acked+1 {
		t.Fatalf("%d records after the crash, but %d were acknowledged as synced", sum.Records, acked)
	}
}

// TestHelperWriter is the process killed by TestCrashLosesOnlyTheUnsyncedBatch.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("AUDIT_HELPER_PATH")
	if path == "" {
		return // only runs as the helper process
	}
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		w.Append(decision(i))
		if i%10 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			fmt.Println(i)
		}
	}
}

// TestConcurrentAppendsAndFlushes has 8 goroutines append 500 records each
// through a queue of 16 (so Append blocks and resumes) in batches of at most
// 7, each goroutine flushing every 50 records: every record must be in
// the log once, the chain intact, and every Flush must return only after
// its caller's earlier records are written.
func TestConcurrentAppendsAndFlushes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{QueueSize: 16, MaxBatch: 7})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 500
	errs := make(chan error, goroutines)
	for g := range goroutines {
		go func() {
			for i := range each {
				if err := w.Append(decision(g*each + i)); err != nil {
					errs <- err
					return
				}
				if i%50 == 49 {
					if err := w.Flush(); err != nil {
						errs <- err
						return
					}
					data, err := os.ReadFile(path)
					if err != nil {
						errs <- err
						return
					}
					if !bytes.Contains(data, []byte(`"path":"/kb/`+strconv.Itoa(g*each+i)+`"`)) {
						errs <- fmt.Errorf("record %d not in the file after Flush returned", g*each+i)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range goroutines {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyChain([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != goroutines*each || sum.LastSeq != goroutines*each {
		t.Fatalf("summary %+v, want %d records", sum, goroutines*each)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range goroutines * each {
		if n := bytes.Count(data, []byte(`"path":"/kb/`+strconv.Itoa(i)+`"`)); n != 1 {
			t.Fatalf("record %d is in the log %d times", i, n)
		}
	}
}

// FuzzVerify: whatever bytes an attacker leaves in a log file, Verify
// answers with a summary or an error naming a line, never a panic; and a
// file it accepts has at most as many records as lines.
func FuzzVerify(f *testing.F) {
	ca := testca.New(f, td, t0)
	dir := f.TempDir()
	path := filepath.Join(dir, "seed.log")
	w, err := audit.Open(path, audit.Options{Clock: clock(), Signer: ca.CreateX509SVID(vid), CheckpointEvery: 2})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		if err := w.Append(decision(i)); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	// A rotated file on its own, starting with a segment record (as
	// retention leaves it).
	rotated := filepath.Join(dir, "rot.log")
	w, err = audit.Open(rotated, audit.Options{Clock: clock(), Signer: ca.CreateX509SVID(vid), CheckpointEvery: 2, MaxBytes: 1500})
	if err != nil {
		f.Fatal(err)
	}
	for i := range 8 {
		w.Append(decision(i))
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	if files, _ := audit.Files(rotated); len(files) > 1 {
		data, _ := os.ReadFile(files[1])
		f.Add(data)
	}
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"prev":"","type":"checkpoint","sig":"AAAA","chain":["AAAA"]}` + "\n"))
	bundle := ca.X509Bundle()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.log") // one worker runs one input at a time
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum, err := audit.Verify([]string{p}, audit.VerifyOptions{Bundle: bundle, Now: t0.Add(time.Minute)})
		if err != nil {
			var ve *audit.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a *VerifyError", err)
			}
			return
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; sum.Records > lines {
			t.Fatalf("%d records from %d lines", sum.Records, lines)
		}
	})
}

// TestFullQueueIsWrittenAtOnce: with a queue smaller than a batch and a
// long BatchDelay, a full queue is written at once instead of after the
// delay, so appenders blocked on it move on (100 appends through a queue of
// 4 with an hour's delay).
func TestFullQueueIsWrittenAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{QueueSize: 4, MaxBatch: 256, BatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range 100 {
			if err := w.Append(decision(i)); err != nil {
				done <- err
				return
			}
		}
		done <- w.Flush()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("appends through a full queue waited for BatchDelay")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if sum, err := audit.VerifyChain([]string{path}); err != nil || sum.Records != 100 {
		t.Fatalf("Verify = %+v, %v", sum, err)
	}
}
