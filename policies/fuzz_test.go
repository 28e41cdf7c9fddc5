package policies_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentid/agentid/policies"
)

// FuzzLoad: random HCL never panics, loading stays all-or-nothing, and a
// loaded set answers Decide and Explain alike. Seeds: testdata/fuzz/FuzzLoad
// plus every example and diagnostics file.
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"testdata/diags/*.hcl", "../examples/policies/*.hcl"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			src, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		set, diags := policies.LoadFiles([]policies.File{{Name: "f.hcl", Src: src}})
		if (set == nil) != diags.HasErrors() {
			t.Fatalf("set %v, errors %v", set != nil, diags.HasErrors())
		}
		if set == nil {
			return
		}
		for _, in := range []*policies.Input{input(), input(func(in *policies.Input) { in.Peer.Claims = nil }),
			input(func(in *policies.Input) { in.Action = policies.Action{Kind: "mcp", Name: "search"} })} {
			if a, b := set.Decide(in), set.Explain(in); a.Allow != b.Allow {
				t.Fatalf("Decide %v != Explain %v", a.Allow, b.Allow)
			}
		}
		files := []policies.File{{Name: "t_test.hcl", Src: src}}
		cases, _ := set.LoadTests(files)
		set.RunTests(cases)
		policies.Format("f.hcl", src)
	})
}
