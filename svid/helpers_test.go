package svid_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var (
	td        = spiffeid.RequireTrustDomainFromString("example.org")
	now       = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	deadline  = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	plannerID = "spiffe://example.org/agent/planner/task/T-41"
	selfID    = spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	digest    = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

// researcher is the contract's example claims: a task delegated by planner.
func researcher() svid.Claims {
	return svid.Claims{
		V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt: digest, Scope: []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{plannerID},
		Deadline:  deadline,
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from golden:\n got: %q\nwant: %q", name, got, want)
	}
}

func wantReason(t *testing.T, err error, want svid.Reason) {
	t.Helper()
	if want == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ve *svid.ValidationError
	if !asValidation(err, &ve) {
		t.Fatalf("error = %v, want a *svid.ValidationError with reason %q", err, want)
	}
	if ve.Reason != want {
		t.Fatalf("reason = %q (%v), want %q", ve.Reason, err, want)
	}
}
