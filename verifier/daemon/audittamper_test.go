package daemon_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/agentid/agentid/verifier/daemon"
)

// TestDaemonRefusesAlteredAuditLog: a decision line of the verifier's
// log is rewritten ("deny" → "allow") while the verifier is stopped. The
// verifier does not start on it (it would sign a checkpoint over the
// altered line), and the error names the log, the line and what to run.
func TestDaemonRefusesAlteredAuditLog(t *testing.T) {
	f := start(t)
	if out := f.check(t, f.taskCert(t, "tickets:write"), "GET", "/kb/doc"); out["allow"] != false {
		t.Fatalf("denied check: %v", out)
	}
	if err := f.d.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
	if bytes.Equal(altered, data) {
		t.Fatal("no deny line in the log")
	}
	if err := os.WriteFile(f.auditPath, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := daemon.ParseConfig([]byte(f.cfgSrc), "verifier.hcl")
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		d.Close()
		t.Fatal("the verifier started on an altered decision log")
	}
	for _, want := range []string{f.auditPath, "line of seq", "was altered", "agentid audit verify"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
