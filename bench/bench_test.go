package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/cedar-policy/cedar-go"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
)

var sizes = []int{10, 100, 1000}

// TestSameDecisions checks that the three engines agree on every generated
// request, and that both outcomes occur.
func TestSameDecisions(t *testing.T) {
	ctx := context.Background()
	for _, n := range sizes {
		e, err := Compile(n)
		if err != nil {
			t.Fatal(err)
		}
		allowed := 0
		reqs := policygen.Requests(n, 2000, 7)
		for _, r := range reqs {
			ours := e.Ours.Decide(r.Input()).Allow
			opa, err := e.OPA.Decide(ctx, OPAInput(r))
			if err != nil {
				t.Fatal(err)
			}
			ced, _ := e.Cedar.IsAuthorized(cedar.EntityMap{}, CedarRequest(r))
			if ours != opa || ours != bool(ced) {
				t.Fatalf("rules=%d %+v: agentid %v, opa %v, cedar %v", n, r, ours, opa, ced)
			}
			if ours {
				allowed++
			}
		}
		if allowed == 0 || allowed == len(reqs) {
			t.Fatalf("rules=%d: %d of %d allowed: the requests do not exercise both outcomes", n, allowed, len(reqs))
		}
		t.Logf("rules=%d: %d of %d allowed, all three engines agree", n, allowed, len(reqs))
	}
}

func BenchmarkEngines(b *testing.B) {
	ctx := context.Background()
	for _, n := range sizes {
		e, err := Compile(n)
		if err != nil {
			b.Fatal(err)
		}
		reqs := policygen.Requests(n, 512, 1)
		ours := make([]*policies.Input, len(reqs))
		opa := make([]ast.Value, len(reqs))
		ced := make([]cedar.Request, len(reqs))
		for i, r := range reqs {
			ours[i], opa[i], ced[i] = r.Input(), OPAInput(r), CedarRequest(r)
		}
		b.Run(fmt.Sprintf("agentid/rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				e.Ours.Decide(ours[i%len(ours)])
			}
		})
		b.Run(fmt.Sprintf("opa/rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := e.OPA.Decide(ctx, opa[i%len(opa)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("cedar/rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			entities := cedar.EntityMap{}
			for i := 0; b.Loop(); i++ {
				e.Cedar.IsAuthorized(entities, ced[i%len(ced)])
			}
		})
	}
}
