package policies_test

import (
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestEmptyPolicyDirWarns: a policy directory without *.hcl files (a
// mistyped policy_dir, a mount that did not happen) loaded silently as a
// set that denies everything; it fails closed and now also says why.
func TestEmptyPolicyDirWarns(t *testing.T) {
	set, diags := policies.Load(t.TempDir())
	if diags.HasErrors() || set == nil {
		t.Fatalf("%v %v", set, diags)
	}
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "no policy file") {
		t.Fatalf("diagnostics %v, want the No rules warning naming the missing files", diags)
	}
	if d := set.Decide(&policies.Input{Action: policies.Action{Kind: "http", Method: "GET", Path: "/"}}); d.Allow {
		t.Fatal("an empty set allowed")
	}
}
