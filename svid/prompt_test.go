package svid_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentid/agentid/svid"
)

func TestPromptDigestFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	os.WriteFile(a, []byte("You are a careful researcher.\n"), 0o600)
	os.WriteFile(b, []byte("Only read the knowledge base.\n"), 0o600)

	one, err := svid.PromptDigestFiles(a)
	if err != nil || one != svid.PromptDigest([]byte("You are a careful researcher.\n")) || !svid.ValidPromptDigest(one) {
		t.Fatalf("one file: %q %v", one, err)
	}
	ab, _ := svid.PromptDigestFiles(a, b)
	ba, _ := svid.PromptDigestFiles(b, a)
	if ab != ba || ab == one || !svid.ValidPromptDigest(ab) {
		t.Fatalf("order dependence or bad digest: %q %q", ab, ba)
	}
	if aab, _ := svid.PromptDigestFiles(a, a, b); aab == ab {
		t.Fatal("repeating a file must change the digest")
	}
	if _, err := svid.PromptDigestFiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file accepted")
	}
	// The documented shell equivalent.
	if _, err := exec.LookPath("sha256sum"); err == nil {
		out, err := exec.Command("sh", "-c", "sha256sum \"$1\" \"$2\" | cut -d' ' -f1 | sort | sha256sum | cut -d' ' -f1", "sh", b, a).Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := "sha256:" + strings.TrimSpace(string(out)); ab != want {
			t.Fatalf("digest %s, shell says %s", ab, want)
		}
	}
}
