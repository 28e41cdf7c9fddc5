package policies_test

import (
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

// TestConditionErrorsBounded: a condition error that quotes request data
// (an RFC 3339 time, an IP address, a number) is cut, so that one
// request cannot put its own megabyte into Decision.Errors and from there
// into the audit log and the client's answer.
func TestConditionErrorsBounded(t *testing.T) {
	long := strings.Repeat("9", 64<<10)
	for _, cond := range []string{
		`before(request.headers["x-v"], now)`,
		`cidr_contains("10.0.0.0/8", request.headers["x-v"])`,
		`duration(request.headers["x-v"]) > 0`,
		`timeadd(request.headers["x-v"], "1h") != ""`,
		`request.headers["x-v"] < 5`,
	} {
		set := mustLoad(t, allowIf("", cond))
		d := set.Decide(input(func(in *policies.Input) { in.Request.Headers = map[string][]string{"X-V": {long}} }))
		if d.Allow || len(d.Errors) == 0 {
			t.Errorf("%s: allow %v, errors %v", cond, d.Allow, len(d.Errors))
			continue
		}
		for _, e := range d.Errors {
			if len(e) > 1024 {
				t.Errorf("%s: an error of %d bytes: %.200s…", cond, len(e), e)
			}
		}
	}
	// the arguments' error too
	set := mustLoad(t, allowIf("", `action.arguments.a == 1`))
	d := set.Decide(input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "t",
			Arguments: `{"` + strings.Repeat("k", 64<<10) + `":1,"` + strings.Repeat("k", 64<<10) + `":2}`}
	}))
	for _, e := range d.Errors {
		if len(e) > 1024 {
			t.Errorf("arguments: an error of %d bytes", len(e))
		}
	}
}
