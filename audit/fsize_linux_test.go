package audit_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/fsize"
)

// A log that cannot write refuses new records, says so, keeps what it had
// accepted and recovers by itself once it can write again.
func TestWriteFailureIsVisibleAndRecovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 3; i++ {
		if err := w.Append(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "before"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	lift := fsize.Limit(t, uint64(st.Size())+100)

	// Accepted before the failure was known: kept, written later.
	accepted := 0
	for i := 0; i < 5; i++ {
		if err := w.Append(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "during"}); err == nil {
			accepted++
		}
	}
	if err := w.Flush(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("flush past the size limit: %v, want ErrUnavailable", err)
	}
	if err := w.Append(audit.Record{Type: audit.TypeDecision, Reason: "refused"}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("append while the log cannot write: %v", err)
	}
	if w.Healthy() == nil || w.WriteErrors() == 0 {
		t.Fatalf("healthy %v, write errors %d", w.Healthy(), w.WriteErrors())
	}
	time.Sleep(60 * time.Millisecond) // retries fail while the limit holds
	if w.Healthy() == nil {
		t.Fatal("healthy while still over the limit")
	}

	lift()
	deadline := time.Now().Add(5 * time.Second)
	for w.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %v", w.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.Append(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "after"}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil || w.Pending() != 0 {
		t.Fatalf("after recovery: flush %v, %d pending (want 0: the lag must not drift)", err, w.Pending())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyChain([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 + accepted + 1; sum.Records != want {
		t.Fatalf("%d records in the log, want %d (3 before, %d accepted during, 1 after): nothing accepted may be lost", sum.Records, want, accepted)
	}
}

// TestAppendWaitFailureDropsTheRecord: a record whose caller waits and
// that cannot be written is refused with ErrUnavailable and not written
// later (the caller was told it is not in the log), while records
// appended without waiting are kept and written once the log recovers.
func TestAppendWaitFailureDropsTheRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.AppendWait(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "before"}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	lift := fsize.Limit(t, uint64(st.Size())+100)
	w.Append(audit.Record{Type: audit.TypeDecision, Decision: "deny", Reason: "kept"})
	if ref, err := w.AppendWait(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "refused-" + strings.Repeat("x", 200)}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("AppendWait past the size limit: %v, %v; want ErrUnavailable", ref, err)
	}
	if _, err := w.AppendWait(audit.Record{Type: audit.TypeDecision, Reason: "refused-too"}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("AppendWait while the log cannot write: %v", err)
	}
	lift()
	deadline := time.Now().Add(5 * time.Second)
	for w.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("did not recover: %v", w.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ref, err := w.AppendWait(audit.Record{Type: audit.TypeDecision, Decision: "allow", Reason: "after"})
	if err == nil {
		err = w.Flush() // AppendWait answers once the record is in the OS; the fsync follows
	}
	if err != nil || w.Pending() != 0 {
		t.Fatalf("after recovery: %v, %d pending", err, w.Pending())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "refused") || !strings.Contains(string(data), `"reason":"kept"`) {
		t.Fatalf("log after the failure:\n%s", data)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if ref.Index != 2 || !strings.Contains(lines[ref.Index], `"reason":"after"`) {
		t.Fatalf("ref %+v, log:\n%s", ref, data)
	}
}
