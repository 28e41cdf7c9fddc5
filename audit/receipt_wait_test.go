package audit_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestAppendWaitSharesSyncs: 64 callers each wait for 50 records; every
// caller gets a distinct reference, the line at that index is its record
// and is on disk when AppendWait returns, and the callers share fsyncs
// (group commit) rather than paying one each.
func TestAppendWaitSharesSyncs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const callers, each = 64, 50
	var mu sync.Mutex
	refs := map[uint64]string{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rec := decision(i)
				rec.Reason = fmt.Sprintf("c%d-%d", c, i)
				ref, err := w.AppendWait(rec)
				if err != nil {
					t.Error(err)
					return
				}
				if i == each-1 { // on disk now, before Close
					data, _ := os.ReadFile(path)
					lines := strings.Split(string(data), "\n")
					if ref.Index >= uint64(len(lines)) || !strings.Contains(lines[ref.Index], `"reason":"`+rec.Reason+`"`) {
						t.Errorf("%s: index %d is not its record on disk", rec.Reason, ref.Index)
					}
				}
				mu.Lock()
				if prev, dup := refs[ref.Index]; dup {
					t.Errorf("index %d given to %s and %s", ref.Index, prev, rec.Reason)
				}
				refs[ref.Index] = rec.Reason
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	syncs := w.Syncs()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(refs) != callers*each {
		t.Fatalf("%d references for %d records", len(refs), callers*each)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	origin := audit.Origin([]byte(lines[0]))
	for idx, reason := range refs {
		if !strings.Contains(lines[idx], `"reason":"`+reason+`"`) {
			t.Fatalf("index %d: %s, want the record %s", idx, lines[idx], reason)
		}
	}
	if syncs > callers*each/4 {
		t.Fatalf("%d syncs for %d waiting appends from %d callers: not group-committed", syncs, callers*each, callers)
	}
	t.Logf("%d records, %d syncs (%.1f records per sync), origin %s", callers*each, syncs, float64(callers*each)/float64(syncs), origin)
}

// TestAppendWaitRefString: the reference's text form round-trips and names
// the log's origin.
func TestAppendWaitRefString(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{Clock: clock()})
	if err != nil {
		t.Fatal(err)
	}
	w.Append(decision(0))
	ref, err := w.AppendWait(decision(1))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	data, _ := os.ReadFile(path)
	line1, _, _ := bytes.Cut(data, []byte{'\n'})
	if ref.Index != 1 || ref.Origin != audit.Origin(line1) {
		t.Fatalf("ref %+v", ref)
	}
	back, err := audit.ParseRef(ref.String())
	if err != nil || back != ref {
		t.Fatalf("ParseRef(%q) = %+v, %v", ref.String(), back, err)
	}
	for _, bad := range []string{"", "agentid-audit/;index=1", "agentid-audit/ab;index=x", "other/ab;index=1", "agentid-audit/ab"} {
		if _, err := audit.ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

// TestReceiptsSurviveKill9 kills a writer process with SIGKILL while 16
// goroutines append and wait; every reference it printed (after
// AppendWait returned) must, after a restart, prove with a receipt that
// verifies and holds that very record.
func TestReceiptsSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperReceiptWriter$")
	cmd.Env = append(os.Environ(), "AUDIT_HELPER_PATH="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type handed struct {
		ref    audit.Ref
		reason string
	}
	var got []handed
	sc := bufio.NewScanner(stdout)
	for len(got) < 2000 && sc.Scan() {
		ref, reason, _ := strings.Cut(sc.Text(), " ")
		r, err := audit.ParseRef(ref)
		if err != nil {
			t.Fatalf("helper printed %q: %v", sc.Text(), err)
		}
		got = append(got, handed{r, reason})
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(got) < 2000 {
		t.Fatalf("helper ended after %d references: %s", len(got), stderr.String())
	}

	// Restart: the writer continues the log; its checkpoint on Close
	// covers everything written before the kill.
	w, err := audit.Open(path, audit.Options{Signer: ca.CreateX509SVID(vid)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := audit.Files(path)
	opts := audit.VerifyOptions{Bundle: ca.X509Bundle()}
	if _, err := audit.Verify(files, opts); err != nil {
		t.Fatal(err)
	}
	for i, h := range got {
		if i%50 != 0 && i < len(got)-50 { // every 50th, and the last 50 handed out
			continue
		}
		r, err := audit.Prove(files, h.ref.Index)
		if err != nil {
			t.Fatalf("reference %s (%s) handed out before the kill: %v", h.ref, h.reason, err)
		}
		// The tree index, rebuilt and checked by the restart, gives the
		// same receipt.
		if fast, err := audit.ProveIndexed(path, h.ref.Index); err != nil || !reflect.DeepEqual(fast, r) {
			t.Fatalf("reference %s: ProveIndexed = %+v, %v; Prove = %+v", h.ref, fast, err, r)
		}
		if r.Origin != h.ref.Origin {
			t.Fatalf("reference %s: the log is %s", h.ref, r.Origin)
		}
		res, err := audit.VerifyReceipt(r, opts)
		if err != nil {
			t.Fatalf("reference %s: %v", h.ref, err)
		}
		if res.Record.Reason != h.reason {
			t.Fatalf("reference %s proves %q, but was handed out for %q", h.ref, res.Record.Reason, h.reason)
		}
	}
}

// TestHelperReceiptWriter is the process TestReceiptsSurviveKill9 kills.
func TestHelperReceiptWriter(t *testing.T) {
	path := os.Getenv("AUDIT_HELPER_PATH")
	if path == "" {
		return // only runs as the helper process
	}
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendUntilKilled(t, w)
}

// TestSignerIDRefusesAnotherSVID: with SignerID set, an SVID of another ID
// does not sign checkpoints (CheckpointError says why); the right one does.
func TestSignerIDRefusesAnotherSVID(t *testing.T) {
	ca := testca.New(t, td, t0)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{Clock: clock(), Signer: ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/ci")), SignerID: vid, CheckpointEvery: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Append(decision(i))
	}
	w.Flush()
	if err := w.CheckpointError(); err == nil || !strings.Contains(err.Error(), "not the configured signer spiffe://example.org/verifier") {
		t.Fatalf("checkpoint error %v", err)
	}
	w.Close()
	if data, _ := os.ReadFile(path); strings.Contains(string(data), `"type":"checkpoint"`) {
		t.Fatalf("signed with the wrong SVID:\n%s", data)
	}
}

// appendUntilKilled is the loop of a helper process that a crash test
// kills: 16 callers append with AppendWait and print each reference handed
// out with its record's reason, until the process dies.
func appendUntilKilled(t *testing.T, w *audit.Writer) {
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				rec := decision(i)
				rec.Reason = fmt.Sprintf("c%d-%d", c, i)
				ref, err := w.AppendWait(rec)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fmt.Fprintf(out, "%s %s\n", ref, rec.Reason)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}
