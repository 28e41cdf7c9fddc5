package policies_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
)

// The rule index files a rule whose SPIFFE ID patterns all name an agent
// (spiffe://td/agent/<name>/…) under that agent, and a decision looks only
// at the rules filed under the agent of the peer's ID. A "**" before the
// agent segment (in the trust-domain position: "spiffe://**/agent/planner/**")
// crosses "/", so the pattern matches IDs of other shapes too: filed under
// planner, the deny was skipped by Decide while Explain (policy tests,
// agentid policy eval --trace) applied it.

var (
	idPatternParts = [][]string{
		{"example.org", "*", "**", "ex*", "e**g", "*.org"},
		{"", "/**", "/*", "/cluster-a"},
		{"/agent/"},
		{"planner", "*", "plan*"},
		{"", "/**", "/*", "/task/*", "/task/**"},
	}
	idSamples = []string{
		"spiffe://example.org/agent/planner",
		"spiffe://example.org/agent/planner/task/T-1",
		"spiffe://example.org/cluster-a/agent/planner/task/T-1",
		"spiffe://example.org/agent/researcher/x/agent/planner/y",
		"spiffe://example.org/agent/researcher/task/T-2",
		"spiffe://example.org/svc/agent/planner",
		"spiffe://other.org/agent/planner/task/T-1",
		"spiffe://example.org/agent/planner2/task/T-1",
		"spiffe://example.org/x/g/agent/planner/task/T-1", // "e**g" = "example.org/x/g"
	}
)

// decideExplainAgree loads a deny on the SPIFFE ID pattern beside an
// allow-all rule and compares Decide with Explain for id.
func decideExplainAgree(t *testing.T, set *policies.Set, pattern string, id spiffeid.ID) {
	t.Helper()
	in := &policies.Input{Peer: policies.Peer{ID: id}, Action: policies.Action{Kind: "http", Method: "GET", Path: "/kb/doc"}, Now: now}
	if d, e := set.Decide(in), set.Explain(in); d.Allow != e.Allow {
		t.Errorf("pattern %q, id %s: Decide allow=%v by %v, Explain allow=%v by %v", pattern, id, d.Allow, d.RuleNames(), e.Allow, e.RuleNames())
	}
}

func denyIDSet(pattern string) (*policies.Set, bool) {
	src := fmt.Sprintf(`rule "deny" {
  effect = "deny"
  peer {
    spiffe_id = [%q]
  }
}
rule "all" {
  effect = "allow"
}
`, pattern)
	set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(src)}})
	return set, !diags.HasErrors()
}

// TestIndexIDPatternsAgreeWithExplain: every combination of the pattern
// parts above against every sample ID.
func TestIndexIDPatternsAgreeWithExplain(t *testing.T) {
	patterns := []string{"spiffe://"}
	for _, parts := range idPatternParts {
		var next []string
		for _, p := range patterns {
			for _, part := range parts {
				next = append(next, p+part)
			}
		}
		patterns = next
	}
	loaded := 0
	for _, p := range patterns {
		set, ok := denyIDSet(p)
		if !ok {
			continue
		}
		loaded++
		for _, s := range idSamples {
			decideExplainAgree(t, set, p, spiffeid.RequireFromString(s))
		}
	}
	if loaded < len(patterns)/2 {
		t.Errorf("only %d of %d patterns loaded", loaded, len(patterns))
	}
}

// FuzzIndexIDPatterns: for any SPIFFE ID pattern that loads and any ID,
// the indexed Decide and the exhaustive Explain agree.
func FuzzIndexIDPatterns(f *testing.F) {
	f.Add("spiffe://**/agent/planner/**", "spiffe://example.org/cluster-a/agent/planner/task/T-1")
	f.Add("spiffe://**/agent/planner/**", "spiffe://example.org/agent/researcher/x/agent/planner/y")
	f.Add("spiffe://e**g/agent/planner", "spiffe://example.org/agent/x/agent/planner")
	f.Add("spiffe://example.org/agent/planner/**", "spiffe://example.org/agent/planner/task/T-1")
	f.Add("spiffe://*/agent/*/task/*", "spiffe://a.b/agent/c/task/d")
	f.Fuzz(func(t *testing.T, pattern, id string) {
		if !strings.HasPrefix(pattern, "spiffe://") || len(pattern) > 256 {
			return
		}
		sid, err := spiffeid.FromString(id)
		if err != nil {
			return
		}
		set, ok := denyIDSet(pattern)
		if !ok {
			return
		}
		decideExplainAgree(t, set, pattern, sid)
	})
}
