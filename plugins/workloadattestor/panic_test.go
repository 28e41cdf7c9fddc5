package workloadattestor_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPanicIsOneFailedCall: a bug that panics inside Attest (here: the
// injected clock) fails that call with Internal and a logged stack; the
// plugin keeps serving, and the next call succeeds.
func TestPanicIsOneFailedCall(t *testing.T) {
	var broken atomic.Bool
	h := serveWith(t, attestor.WithClock(func() time.Time {
		if broken.Load() {
			panic("clock broke")
		}
		return testNow
	}))
	dir := manifestDir(t)
	if err := h.configure(`manifest_dir = "` + dir + `"`); err != nil {
		t.Fatal(err)
	}
	pid := startSleep(t)
	manifestFor(t, dir, pid)

	broken.Store(true)
	_, err := h.attest(pid)
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("Attest with a panicking clock = %v, want Internal", err)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "Recovered from a panic") || !strings.Contains(logs, "method=Attest") || !strings.Contains(logs, "clock broke") {
		t.Fatalf("no log line for the panic:\n%s", logs)
	}

	broken.Store(false)
	sel, err := h.attest(pid)
	if err != nil || len(sel) == 0 {
		t.Fatalf("Attest after the panic = %v, %v; want the task's selectors", sel, err)
	}
}
