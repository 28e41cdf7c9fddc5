package verifier_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// TestAttackLongNumberArguments: an MCP tool call's arguments are checked
// (policies.CheckArguments) before any rule, whatever the policy; an
// integer literal of 1 MiB cost big.Int.SetString, quadratic in its
// digits (2.9 s per decision). It is refused (400) in linear time, with a
// bounded reason, and written to the audit log in a bounded line.
func TestAttackLongNumberArguments(t *testing.T) {
	e := newAttackEnv(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.v.Audit = w
	decide := func(args string) verifier.Result {
		return e.v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendMCP, Audience: "kb",
			Credential: verifier.Credential{Kind: verifier.CredentialJWT, Value: e.jwt},
			Action:     verifier.Action{Kind: "mcp", Method: "tools/call", Name: "search_docs", Arguments: args}})
	}
	if r := decide(`{"q":"x"}`); !r.Allowed() {
		t.Fatalf("baseline: %v %s", r.Outcome, r.Decision.Reason)
	}
	const n = policies.MaxArgumentsLen - 16
	number, str := `{"q":`+strings.Repeat("7", n-6)+`}`, `{"q":"`+strings.Repeat("7", n-8)+`"}`
	r := decide(number)
	if r.Outcome != verifier.BadRequest || !strings.Contains(r.Decision.Reason, "characters, more than 400") {
		t.Errorf("1 MiB integer: %v %.300s", r.Outcome, r.Decision.Reason)
	}
	if len(r.Decision.Reason) > 1024 {
		t.Errorf("the reason quotes %d bytes of the request", len(r.Decision.Reason))
	}
	// the same size as a string: a linear decision costs about the same
	// (best of 5 interleaved runs; before the bound the ratio was ~1000,
	// linear is ~1: see policies.TestHostileNumbersCostLikeStrings).
	tn, ts := time.Hour, time.Hour
	for range 5 {
		s := time.Now()
		decide(number)
		tn = min(tn, time.Since(s))
		s = time.Now()
		decide(str)
		ts = min(ts, time.Since(s))
	}
	t.Logf("1 MiB number %v, 1 MiB string %v", tn, ts)
	if float64(tn) > 20*float64(max(ts, time.Microsecond)) {
		t.Errorf("a 1 MiB number costs %v, a string of the same size %v: super-linear", tn, ts)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if len(l) > 8<<10 {
			t.Errorf("an audit line of %d bytes: %.200s", len(l), l)
			break
		}
	}
}

// TestRefusalReasonsBounded: a refusal quotes what it refuses in bounded
// form, and Decision.Reason of a refused input is capped, so a client
// cannot make its refusal (and the audit line that records it) as long as
// what it sent: a header name with "_" of 64 KiB was quoted in full, twice.
func TestRefusalReasonsBounded(t *testing.T) {
	e := newAttackEnv(t)
	name := "X_" + strings.Repeat("a", 64<<10)
	r := e.v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendHTTP, Audience: "kb",
		Credential: verifier.Credential{Kind: verifier.CredentialJWT, Value: e.jwt},
		Action:     verifier.Action{Kind: "http", Method: "GET", Path: "/kb/doc"},
		Request:    verifier.Request{Headers: map[string][]string{name: {"v"}}}})
	if r.Outcome != verifier.BadRequest || !strings.Contains(r.Decision.Reason, `"_"`) {
		t.Fatalf("%v %.200s", r.Outcome, r.Decision.Reason)
	}
	if len(r.Decision.Reason) > 1024 {
		t.Errorf("reason of %d bytes: %.200s…", len(r.Decision.Reason), r.Decision.Reason)
	}
}
