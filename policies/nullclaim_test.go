package policies_test

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
)

// TestPlainSVIDClaimIsConditionError: docs/policy.md promises that a
// condition error fails closed, and a plain SVID (not an agent task) has
// no claims. Reading one (peer.model, peer.principal, peer.scopes…) was a
// null that == and != compared without error: "peer.model !=
// \"untrusted/model\"" allowed every plain SVID and "peer.principal ==
// \"mallory\"" as a deny never matched one. It is a condition error now;
// a guard "peer.is_task && …" short-circuits (at the top level and, with
// HCL 2.25, nested), and lookup(peer, "model", "") reads a default.
func TestPlainSVIDClaimIsConditionError(t *testing.T) {
	plain := &policies.Input{Peer: policies.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/svc/batch")},
		Action: policies.Action{Kind: "http", Method: "GET", Path: "/kb/doc"}, Now: now}
	task := input()
	for _, tt := range []struct {
		name, cond       string
		plainErr         bool // a condition error for the plain SVID
		plainVal, tskVal bool // the value when no error
	}{
		{"!= on a claim", `peer.model != "untrusted/model"`, true, false, true},
		{"== on a claim", `peer.principal == "mallory"`, true, false, false},
		{"contains scopes", `contains(peer.scopes, "kb:read")`, true, false, true},
		{"claim in a function", `startswith(coalesce(peer.agent, "x"), "x")`, true, false, false},
		{"guarded at the top", `peer.is_task && peer.model != "untrusted/model"`, false, false, true},
		{"guarded, nested", `anytrue([peer.is_task && peer.model != "untrusted/model"])`, false, false, true},
		{"guarded with ||", `!peer.is_task || peer.model == "untrusted/model"`, false, true, false},
		{"lookup with a default", `lookup(peer, "model", "none") == "none"`, false, true, false},
		{"id and trust domain", `peer.trust_domain == "example.org" && startswith(peer.id, "spiffe://")`, false, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			allow := mustLoad(t, allowIf("", tt.cond))
			deny := mustLoad(t, `rule "all" { effect = "allow" }
rule "d" {
  effect    = "deny"
  condition = `+tt.cond+`
}
`)
			d := allow.Decide(plain)
			if tt.plainErr {
				if d.Allow || len(d.Errors) == 0 || !strings.Contains(d.Errors[0], "not an agent task") {
					t.Errorf("plain SVID, allow rule: allow %v, errors %q", d.Allow, d.Errors)
				}
				if dd := deny.Decide(plain); dd.Allow {
					t.Errorf("plain SVID, deny rule: allowed by %v", dd.RuleNames())
				}
			} else if d.Allow != tt.plainVal || len(d.Errors) != 0 {
				t.Errorf("plain SVID: allow %v, want %v; errors %q", d.Allow, tt.plainVal, d.Errors)
			}
			if d := allow.Decide(task); d.Allow != tt.tskVal || len(d.Errors) != 0 {
				t.Errorf("task: allow %v, want %v; errors %q", d.Allow, tt.tskVal, d.Errors)
			}
			// Explain agrees
			if d, e := allow.Decide(plain), allow.Explain(plain); d.Allow != e.Allow {
				t.Errorf("Decide %v, Explain %v", d.Allow, e.Allow)
			}
		})
	}
}
