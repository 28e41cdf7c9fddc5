package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/fakeentry"
)

// TestDaemonRefusesAlteredAuditLog: a line of the registrar's decision
// log is rewritten while the registrar is stopped. The registrar does not
// start on it (it would continue, and sign over, the altered log), and
// the error names the log, the line and what to run.
func TestDaemonRefusesAlteredAuditLog(t *testing.T) {
	dir := shortDir(t)
	logPath := filepath.Join(dir, "audit", "registrar.log")
	w, err := audit.Open(logPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"deny", "allow", "allow"} {
		w.Append(audit.Record{Type: audit.TypeRegistrar, Decision: d, Reason: "test"})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(data, []byte(`"decision":"deny"`), []byte(`"decision":"allow"`), 1)
	if bytes.Equal(altered, data) {
		t.Fatal("no deny line in the log")
	}
	if err := os.WriteFile(logPath, altered, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		ServerAPISocket: fakeentry.Start(t).SocketPath, TrustDomain: testTD, ParentID: testNode,
		IssuancePolicy: filepath.Join(dir, "issuance.hcl"), OperatorSocket: filepath.Join(dir, "op.sock"),
		OperatorSocketMode: DefaultOperatorSocketMode, SelectorType: "agentid", MaxX509SVIDTTL: time.Hour,
		MaxJWTSVIDTTL: 5 * time.Minute, AuditPath: logPath,
	}
	writePolicy(t, cfg.IssuancePolicy, daemonPolicy)
	d, err := NewDaemon(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil {
		d.closeAll()
		t.Fatal("the registrar started on an altered decision log")
	}
	for _, want := range []string{logPath, "line of seq 2", "was altered", "agentid audit verify"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
