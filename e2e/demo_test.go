package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
)

// TestDemo runs the delegation story of `make demo` (examples/delegation)
// with binaries built from this tree; the program exits 1 when any step
// turns out otherwise than the story says.
func TestDemo(t *testing.T) {
	root := repoRoot(t)
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/", "./cmd/agentid", "./cmd/agentid-attestor", "./cmd/agentid-composer",
		"./cmd/agentid-registrar", "./cmd/agentid-verifier", "./examples/kbagent", "./examples/kbservice")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	demo := exec.CommandContext(ctx, "go", "run", "./examples/delegation", "-bin-dir", bin, "-spire-bin", spiretest.Bin(t),
		"-examples", filepath.Join(root, "examples", "delegation"))
	demo.Dir = root
	out, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"tickets-need-write-scope (services.hcl:44)",
		// step 3b: MCP tools through the verifier's MCP gateway
		"researcher tools/list -> kb_read, kb_search",
		"tickets-mcp-need-write-scope (services.hcl:",
		"Every step turned out as the story says.",
		// step 5: the researcher's receipt, proved offline with the witness
		"researcher's read proved",
		"cosigned by witness.agentid-dev",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
