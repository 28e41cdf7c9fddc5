package policies_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
)

// TestIndexSound checks that the indexed Decide and the exhaustive
// Explain agree on generated sets and requests.
func TestIndexSound(t *testing.T) {
	for _, n := range sizes {
		set := loadGenerated(t, n)
		allowed := 0
		for _, r := range policygen.Requests(n, 3000, 3) {
			in := r.Input()
			d, e := set.Decide(in), set.Explain(in)
			if d.Allow != e.Allow || fmt.Sprint(d.Rules[:min(1, len(d.Rules))]) != fmt.Sprint(e.Rules[:min(1, len(e.Rules))]) {
				t.Fatalf("rules=%d %+v: Decide %v %v, Explain %v %v", n, r, d.Allow, d.Rules, e.Allow, e.Rules)
			}
			if d.Allow {
				allowed++
			}
		}
		if allowed == 0 {
			t.Fatalf("rules=%d: nothing allowed", n)
		}
	}
}

// TestConcurrentDecideAndReload runs decisions while the store reloads
// (run with -race).
func TestConcurrentDecideAndReload(t *testing.T) {
	store, diags := policies.NewStore("../examples/policies")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if g == 0 && i%20 == 0 {
					store.Reload("../examples/policies")
				}
				store.Decide(input())
				store.Explain(input(func(in *policies.Input) { in.Action = policies.Action{Kind: "mcp", Name: "search_x"} }))
			}
		}()
	}
	wg.Wait()
}

func TestExamplesPass(t *testing.T) {
	set, diags := policies.Load("../examples/policies")
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("examples have diagnostics: %v", diags)
	}
	files, err := policies.ReadTestDir("../examples/policies")
	if err != nil {
		t.Fatal(err)
	}
	cases, diags := set.LoadTests(files)
	if diags.HasErrors() || len(cases) < 10 {
		t.Fatalf("%d cases, %v", len(cases), diags)
	}
	for _, r := range set.RunTests(cases) {
		if r.Failure != "" {
			t.Errorf("%s: %s", r.Case.Name, r.Failure)
		}
	}
}
