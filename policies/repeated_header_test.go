package policies_test

import (
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestRepeatedHeaderConditions: request.headers joins a repeated header
// with "," (as Envoy hands it to ext_authz), so "X-Env: prod" sent twice
// reaches a condition as "prod,prod" — and dodges a deny written as
// == "prod", while Go's Header.Get and most frameworks' first-value
// accessors read "prod" upstream. docs/policy.md warns about it and gives
// the form that holds whatever the repetition and the front-end: test
// every element of the joined value. This test pins both.
func TestRepeatedHeaderConditions(t *testing.T) {
	const naive = `lookup(request.headers, "x-env", "") == "prod"`
	const safe = `matches("(^|,)[ \t]*prod[ \t]*(,|$)", lookup(request.headers, "x-env", ""))`
	policy := func(cond string) *policies.Set {
		return mustLoad(t, `rule "no-prod" {
  effect    = "deny"
  condition = `+cond+`
}
rule "all" {
  effect = "allow"
}
`)
	}
	multi := func(vs ...string) *policies.Input {
		return input(func(in *policies.Input) { in.Request.Headers = map[string][]string{"X-Env": vs} })
	}
	joined := func(v string) *policies.Input { // ext_authz: one joined value
		return input(func(in *policies.Input) { in.Request.HeaderMap = map[string]string{"x-env": v} })
	}
	// the naive form is dodged by repetition: documented, not fixed here
	if d := policy(naive).Decide(multi("prod", "prod")); !d.Allow {
		t.Errorf("naive form: repeated header denied; update docs/policy.md")
	}
	set := policy(safe)
	for _, tt := range []struct {
		name string
		in   *policies.Input
		deny bool
	}{
		{"single", multi("prod"), true},
		{"repeated", multi("prod", "prod"), true},
		{"repeated, other first", multi("staging", "prod"), true},
		{"joined by Envoy", joined("prod,prod"), true},
		{"joined with a space", joined("staging, prod"), true},
		{"with a tab", multi("prod\t", "x"), true},
		{"other", multi("staging"), false},
		{"prefix only", multi("production"), false},
		{"absent", input(), false},
	} {
		if d := set.Decide(tt.in); d.Allow == tt.deny {
			t.Errorf("%s: allow %v, errors %v", tt.name, d.Allow, d.Errors)
		}
	}
}
