package verifier_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/fsize"
)

// Hole 6: a decision that cannot be recorded is not given. With a real
// file size limit (RLIMIT_FSIZE: writes fail with EFBIG as on a full disk)
// the middleware answers 503 instead of serving unrecorded requests, and
// serves again by itself once the log can write.
func TestAttackAuditFailsClosed(t *testing.T) {
	e := newAttackEnv(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e.v.Audit = w
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	chain := e.ca.CreateX509SVID(taskID, ext(t, c)).Certificates
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	get := func() int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/kb/doc", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: chain}
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if got := get(); got != 200 {
		t.Fatalf("before: %d", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	lift := fsize.Limit(t, uint64(st.Size())+64)

	get()     // accepted before the failure is known: kept for retry
	w.Flush() // the write fails
	for i := 0; i < 3; i++ {
		if got := get(); got != http.StatusServiceUnavailable {
			t.Fatalf("while the log cannot write: %d, want 503", got)
		}
	}
	lift()
	deadline := time.Now().Add(5 * time.Second)
	for get() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("requests not served again after the log recovered")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
