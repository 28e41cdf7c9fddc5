package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
)

const digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func buildCmd(t *testing.T, pkg string) string { return spiretest.BuildCmd(t, pkg) }

// TestLaunchedTaskGetsClaims: a task created through the CLI against the
// real SPIRE server, launched with `agentid run`, gets an X.509-SVID with
// the claims extension and a JWT-SVID with the agentid and act claims; the
// same program launched without the launcher gets no identity.
func TestLaunchedTaskGetsClaims(t *testing.T) {
	s := newStack(t)
	taskFile := s.createTask("planner", "T-1", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "kb:read", "--scope", "tickets:write", "--principal", "spiffe://example.org/user/alice", "--ttl", "1h")
	want, err := readRecord(t, taskFile)
	if err != nil {
		t.Fatal(err)
	}

	reps := s.inspectAs(taskFile, "kb", 30*time.Second)
	kinds := map[string]bool{}
	for _, r := range reps {
		if r.SPIFFEID != "spiffe://example.org/agent/planner/task/T-1" {
			t.Fatalf("unexpected identity %s", r.SPIFFEID)
		}
		if got := claimsOf(t, r); !got.Equal(want) {
			t.Fatalf("%s claims %+v, want %+v", r.Kind, got, want)
		}
		kinds[r.Kind] = true
	}
	if !kinds["x509"] || !kinds["jwt"] {
		t.Fatalf("want an X.509-SVID and a JWT-SVID, got %v", kinds)
	}

	// openssl reads the extension SPIRE signed.
	out := filepath.Join(s.dir, "svid")
	os.Mkdir(out, 0o700)
	s.mustRun("run", "--task-file", taskFile, "--manifest-dir", s.manifestDir, "--",
		filepath.Join(spiretest.Bin(t), "spire-agent"), "api", "fetch", "x509", "-socketPath", s.agent.SocketPath, "-write", out)
	if openssl, err := exec.LookPath("openssl"); err == nil {
		text, err := exec.Command(openssl, "x509", "-in", filepath.Join(out, "svid.0.pem"), "-noout", "-text").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, text)
		}
		for _, w := range []string{"1.3.6.1.4.1.32473.1.1:", `"agent":"planner"`, `"scope":["kb:read","tickets:write"]`} {
			if !strings.Contains(string(text), w) {
				t.Errorf("openssl output lacks %q:\n%s", w, text)
			}
		}
	} else {
		t.Log("openssl not installed: the certificate was checked with Go only")
	}

	// Not launched as a task: no identity at all.
	_, err = s.run("svid", "inspect", "--socket", s.agent.SocketPath)
	if err == nil || !strings.Contains(err.Error(), "no identity issued") {
		t.Fatalf("process without a manifest: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
