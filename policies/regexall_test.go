package policies_test

import (
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestRegexallOverClientDataRefused: regexall over a string the client
// chooses costs time quadratic in it — Go's FindAll restarts after each
// match, and with "a[^x]*x|a" every short match first scans the rest of
// the input for the longer alternative (a 16 KiB header took 2.4 s, the
// 8 KiB of an SVID's claims ~0.6 s). The loader refuses it, with
// file:line:col, as it refuses patterns from the request; regexall over
// the policy's own strings, matches and regex (one match, linear) load.
func TestRegexallOverClientDataRefused(t *testing.T) {
	for _, cond := range []string{
		`length(regexall("a[^x]*x|a", request.headers["x-q"])) > 0`,
		`length(regexall("a", action.path)) > 1`,
		`can(regexall("a", lookup(request.headers, "x-q", "")))`,
		`length(regexall("a", peer.prompt)) > 0`,
		`length(regexall("a", context.q)) > 0`,
		`anytrue([for s in split("/", action.path) : length(regexall("a", s)) > 0])`,
	} {
		_, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(allowIf("", cond))}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "p.hcl:3,") || !strings.Contains(diags.Error(), "regexall") {
			t.Errorf("%s: loaded (%v)", cond, diags)
		}
	}
	set := mustLoad(t, `
variable "tags" {
  value = "a,b,c"
}
rule "r" {
  effect    = "allow"
  condition = (length(regexall("[a-c]", var.tags)) == 3 && matches("a[^x]*x|a", request.headers["x-q"])
    && regex("a+", request.headers["x-q"]) != "")
}
`)
	in := input(func(in *policies.Input) {
		in.Request.Headers = map[string][]string{"X-Q": {strings.Repeat("a", 64<<10)}}
	})
	if d := set.Decide(in); !d.Allow {
		t.Errorf("denied: %s %v", d.Reason, d.Errors)
	}
}
