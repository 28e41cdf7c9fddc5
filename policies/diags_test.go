package policies_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/agentid/agentid/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func formatDiags(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		sev := "warning"
		if d.Severity == hcl.DiagError {
			sev = "error"
		}
		loc := "-"
		if d.Subject != nil {
			loc = fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column)
		}
		fmt.Fprintf(&b, "%s: %s: %s: %s\n", loc, sev, d.Summary, d.Detail)
	}
	return b.String()
}

// TestDiagnosticsGolden loads each testdata/diags/*.hcl on its own and
// compares the diagnostics with the .golden file (go test -update).
func TestDiagnosticsGolden(t *testing.T) {
	paths, _ := filepath.Glob("testdata/diags/*.hcl")
	if len(paths) == 0 {
		t.Fatal("no testdata")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			set, diags := policies.LoadFiles([]policies.File{{Name: filepath.Base(p), Src: src}})
			if diags.HasErrors() != (set == nil) {
				t.Errorf("set %v with errors %v: loading must be all-or-nothing", set != nil, diags.HasErrors())
			}
			got := formatDiags(diags)
			golden := strings.TrimSuffix(p, ".hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("diagnostics:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
