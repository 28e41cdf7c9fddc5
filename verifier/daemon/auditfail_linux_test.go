package daemon_test

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fsize"
)

// While the decision log cannot write, /readyz fails, the metrics say so
// and decisions are refused with audit_unavailable; all of it recovers by
// itself once the log can write again.
func TestDaemonAuditFailure(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "")
	reader := f.taskCert(t, "kb:read")
	if out := f.check(t, reader, "GET", "/kb/doc"); out["allow"] != true {
		t.Fatalf("before: %v", out)
	}
	time.Sleep(20 * time.Millisecond) // the batch is written
	st, err := os.Stat(f.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	lift := fsize.Limit(t, uint64(st.Size())+32)
	ready := func() int {
		resp, err := http.Get("http://" + f.d.Addr("metrics").String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	f.check(t, reader, "GET", "/kb/doc") // accepted; its write fails
	waitFor(t, func() bool { return ready() == http.StatusServiceUnavailable })
	if out := f.check(t, reader, "GET", "/kb/doc"); out["allow"] != false || out["deny_code"] != "audit_unavailable" {
		t.Fatalf("while the log cannot write: %v", out)
	}
	m := metricsText(t, f)
	if !strings.Contains(m, "agentid_audit_healthy 0") || strings.Contains(m, "agentid_audit_write_errors_total 0") {
		t.Fatalf("metrics do not show the failure:\n%s", grepLines(m, "agentid_audit"))
	}
	lift()
	waitFor(t, func() bool { return ready() == http.StatusOK })
	if out := f.check(t, reader, "GET", "/kb/doc"); out["allow"] != true {
		t.Fatalf("after recovery: %v", out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
