package policies_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
)

var (
	now     = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	prompt1 = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	prompt2 = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
)

func claims() *svid.Claims {
	return &svid.Claims{
		V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt: prompt1, Scope: []string{"kb:read", "web:search"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline:  now.Add(time.Hour),
	}
}

func input(mod ...func(*policies.Input)) *policies.Input {
	in := &policies.Input{
		Peer:   policies.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"), Claims: claims()},
		Action: policies.Action{Kind: "http", Method: "GET", Path: "/kb/docs/1"},
		Now:    now,
	}
	for _, m := range mod {
		m(in)
	}
	return in
}

func mustLoad(t *testing.T, src string) *policies.Set {
	t.Helper()
	set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(src)}})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	return set
}

// allowIf wraps a peer block and a condition in an allow rule for any action.
func allowIf(peer, cond string) string {
	s := "rule \"r\" {\n  effect = \"allow\"\n"
	if peer != "" {
		s += "  peer {\n" + peer + "\n  }\n"
	}
	if cond != "" {
		s += "  condition = " + cond + "\n"
	}
	return s + "}\n"
}

func TestPeerConstructs(t *testing.T) {
	plain := func(in *policies.Input) { in.Peer.Claims = nil }
	deep := func(in *policies.Input) {
		in.Peer.Claims.Chain = []string{"spiffe://example.org/agent/planner/task/T-1", "spiffe://example.org/agent/sandbox/task/S-2"}
	}
	root := func(in *policies.Input) { in.Peer.Claims.Chain = nil }
	tests := []struct {
		name, peer string
		mod        func(*policies.Input)
		want       bool
	}{
		{"spiffe_id exact", `spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"`, nil, true},
		{"spiffe_id exact other", `spiffe_id = "spiffe://example.org/agent/researcher/task/T-43"`, nil, false},
		{"spiffe_id one segment", `spiffe_id = ["spiffe://example.org/agent/*/task/T-42"]`, nil, true},
		{"spiffe_id one segment only", `spiffe_id = ["spiffe://example.org/agent/*"]`, nil, false},
		{"spiffe_id suffix", `spiffe_id = ["spiffe://example.org/agent/researcher/**"]`, nil, true},
		{"spiffe_id plain SVID", `spiffe_id = ["spiffe://example.org/agent/researcher/**"]`, plain, true},
		{"trust_domain", `trust_domain = "example.org"`, nil, true},
		{"trust_domain other", `trust_domain = ["other.org"]`, nil, false},
		{"agent", `agent = "researcher"`, nil, true},
		{"agent other", `agent = "writer"`, nil, false},
		{"agent plain SVID", `agent = "researcher"`, plain, false},
		{"task pattern", `task = "T-*"`, nil, true},
		{"model exact", `model = "openai/gpt-4o"`, nil, true},
		{"model pattern", `model = ["anthropic/*", "openai/*"]`, nil, true},
		{"model other", `model = "anthropic/*"`, nil, false},
		{"prompt in set", `prompt = ["` + prompt2 + `", "` + prompt1 + `"]`, nil, true},
		{"prompt not in set", `prompt = ["` + prompt2 + `"]`, nil, false},
		{"scopes_all", `scopes_all = ["kb:read", "web:search"]`, nil, true},
		{"scopes_all missing", `scopes_all = ["kb:read", "kb:write"]`, nil, false},
		{"scopes_any", `scopes_any = ["kb:write", "web:search"]`, nil, true},
		{"scopes_any none", `scopes_any = ["kb:write"]`, nil, false},
		{"principal", `principal = "spiffe://example.org/user/*"`, nil, true},
		{"principal other", `principal = "spiffe://example.org/service/*"`, nil, false},
		{"max_depth", `max_depth = 1`, nil, true},
		{"max_depth exceeded", `max_depth = 1`, deep, false},
		{"min_depth", `min_depth = 1`, nil, true},
		{"min_depth root", `min_depth = 1`, root, false},
		{"delegators_allowed", `delegators_allowed = ["spiffe://example.org/agent/planner/**"]`, nil, true},
		{"delegators_allowed other", `delegators_allowed = ["spiffe://example.org/agent/planner/**"]`, deep, false},
		{"delegators_allowed root task", `delegators_allowed = ["spiffe://example.org/agent/planner/**"]`, root, true},
		{"delegators_forbidden", `delegators_forbidden = ["spiffe://example.org/agent/sandbox/**"]`, nil, true},
		{"delegators_forbidden present", `delegators_forbidden = ["spiffe://example.org/agent/sandbox/**"]`, deep, false},
		{"delegated_by", `delegated_by = ["spiffe://example.org/agent/sandbox/**"]`, deep, true},
		{"delegated_by absent", `delegated_by = ["spiffe://example.org/agent/sandbox/**"]`, nil, false},
		{"chain_root", `chain_root = "spiffe://example.org/agent/planner/**"`, deep, true},
		{"chain_root other", `chain_root = "spiffe://example.org/agent/sandbox/**"`, deep, false},
		{"chain_root of a root task is itself", `chain_root = "spiffe://example.org/agent/researcher/**"`, root, true},
		{"min_deadline_remaining", `min_deadline_remaining = "59m"`, nil, true},
		{"min_deadline_remaining short", `min_deadline_remaining = "61m"`, nil, false},
		{"min_deadline_remaining days", `min_deadline_remaining = "1d"`, nil, false},
		{"task_required", `task_required = true`, nil, true},
		{"task_required plain", `task_required = true`, plain, false},
		{"task_required false plain", `task_required = false`, plain, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustLoad(t, allowIf(tt.peer, ""))
			in := input()
			if tt.mod != nil {
				tt.mod(in)
			}
			d := set.Decide(in)
			if d.Allow != tt.want {
				t.Errorf("Decide = %v, want %v; trace: %v", d.Allow, tt.want, set.Explain(in).Trace)
			}
			if e := set.Explain(in); e.Allow != d.Allow {
				t.Errorf("Explain = %v, Decide = %v", e.Allow, d.Allow)
			}
		})
	}
}

func TestActionConstructs(t *testing.T) {
	src := `
rule "http" {
  effect = "allow"
  action {
    http {
      methods = ["GET", "HEAD"]
      paths   = ["/kb/**", "/status"]
    }
  }
}
rule "any-method" {
  effect = "allow"
  action {
    http { paths = ["/open/*"] }
  }
}
rule "grpc" {
  effect = "allow"
  action {
    grpc { methods = ["/kb.v1.KB/Get*"] }
  }
}
rule "mcp" {
  effect = "allow"
  action {
    mcp { tools = ["search_*", "fetch"] }
  }
}
rule "generic" {
  effect = "allow"
  action {
    generic {
      kind  = "queue"
      names = ["orders.*"]
    }
  }
}
`
	set := mustLoad(t, src)
	tests := []struct {
		action string
		want   string // deciding rule, "" for deny
	}{
		{"http GET /kb/docs/1", "http"},
		{"http HEAD /kb/x", "http"},
		{"http POST /kb/x", ""},
		{"http GET /status", "http"},
		{"http GET /status/x", ""},
		{"http DELETE /open/x", "any-method"},
		{"http DELETE /open/x/y", ""},
		{"grpc /kb.v1.KB/GetDoc", "grpc"},
		{"grpc /kb.v1.KB/Delete", ""},
		{"grpc /kb.v2.KB/GetDoc", ""},
		{"mcp search_web", "mcp"},
		{"mcp fetch", "mcp"},
		{"mcp fetch_all", ""},
		{"queue orders.created", "generic"},
		{"queue invoices.created", ""},
		{"topic orders.created", ""},
	}
	for _, tt := range tests {
		a, err := policies.ParseAction(tt.action)
		if err != nil {
			t.Fatal(err)
		}
		d := set.Decide(input(func(in *policies.Input) { in.Action = a }))
		got := ""
		if d.Allow {
			got = d.Rules[0].Name
		}
		if got != tt.want {
			t.Errorf("%s: decided by %q, want %q (%s)", tt.action, got, tt.want, d.Reason)
		}
	}
}

func TestDenyWinsAndDefaultDeny(t *testing.T) {
	set := mustLoad(t, `
rule "allow-kb" {
  effect = "allow"
  reason = "kb is open"
  action {
    http { paths = ["/kb/**"] }
  }
}
rule "no-admin" {
  effect = "deny"
  reason = "admin is closed"
  action {
    http { paths = ["/kb/admin/**"] }
  }
}
rule "no-researchers-admin" {
  effect = "deny"
  peer { agent = "researcher" }
  action {
    http { paths = ["/kb/admin/**"] }
  }
}
`)
	d := set.Decide(input(func(in *policies.Input) { in.Action.Path = "/kb/admin/x" }))
	if d.Allow || d.Reason != "admin is closed" || !slices.Equal(d.RuleNames(), []string{"no-admin", "no-researchers-admin"}) {
		t.Errorf("deny: %+v", d)
	}
	if d.Rules[0].File != "p.hcl" || d.Rules[0].Line != 9 {
		t.Errorf("rule ref = %+v, want p.hcl:9", d.Rules[0])
	}
	d = set.Decide(input())
	if !d.Allow || d.Reason != "kb is open" || d.Rules[0].String() != "allow-kb (p.hcl:2)" {
		t.Errorf("allow: %+v", d)
	}
	d = set.Decide(input(func(in *policies.Input) { in.Action.Path = "/other" }))
	if d.Allow || d.Reason != policies.ReasonNoRule || d.Rules != nil {
		t.Errorf("default: %+v", d)
	}
	var none *policies.Set
	if d := none.Decide(input()); d.Allow || d.Reason != policies.ReasonNoPolicy {
		t.Errorf("nil set: %+v", d)
	}
}

func TestConditions(t *testing.T) {
	withHeaders := func(in *policies.Input) {
		in.Request.Headers = map[string][]string{"x-ticket": {"CHG-1"}}
		in.Request.Source = netip.MustParseAddrPort("10.1.2.3:5000")
	}
	tests := []struct {
		name, cond string
		mod        func(*policies.Input)
		want       bool
	}{
		{"peer attr", `peer.agent == "researcher" && peer.depth == 1`, nil, true},
		{"glob", `glob("spiffe://example.org/agent/*/task/*", peer.id)`, nil, true},
		{"contains", `contains(peer.scopes, "kb:read")`, nil, true},
		{"subset", `subset(["kb:read"], peer.scopes)`, nil, true},
		{"subset no", `subset(["kb:read", "kb:write"], peer.scopes)`, nil, false},
		{"has_scope", `has_scope(peer, "web:search")`, nil, true},
		{"duration", `peer.deadline_remaining >= duration("1h")`, nil, true},
		{"duration short", `peer.deadline_remaining > duration("1h")`, nil, false},
		{"time helpers", `hour(now) == 10 && weekday(now) == "Sunday" && before(now, peer.deadline) && unix(now) > 0`, nil, true},
		{"timeadd", `before(timeadd(now, "2h"), peer.deadline)`, nil, false},
		{"headers", `lookup(request.headers, "x-ticket", "") != ""`, withHeaders, true},
		{"headers absent", `lookup(request.headers, "x-ticket", "") != ""`, nil, false},
		{"single-valued headers", `request.headers["x-ticket"] == "CHG-1"`, func(in *policies.Input) { in.Request.HeaderMap = map[string]string{"X-Ticket": "CHG-1"} }, true},
		{"headers before single-valued", `request.headers["x-ticket"] == "CHG-1"`, func(in *policies.Input) {
			withHeaders(in)
			in.Request.HeaderMap = map[string]string{"x-ticket": "CHG-2"}
		}, true},
		{"source cidr", `cidr_contains("10.0.0.0/8", request.source)`, withHeaders, true},
		{"action", `action.kind == "http" && startswith(action.path, "/kb/") && endswith(action.path, "/1")`, nil, true},
		{"short-circuit or", `true || (1 / 0 > 1)`, nil, true},
		{"not", `!(peer.model == "x")`, nil, true},
		{"anytrue", `anytrue([for s in peer.scopes : startswith(s, "web:")])`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := mustLoad(t, allowIf("", tt.cond))
			in := input()
			if tt.mod != nil {
				tt.mod(in)
			}
			d := set.Decide(in)
			if d.Allow != tt.want || len(d.Errors) != 0 {
				t.Errorf("Decide = %v (errors %q), want %v", d.Allow, d.Errors, tt.want)
			}
		})
	}
}

func TestConditionErrorsFailClosed(t *testing.T) {
	// request.headers["x-ticket"] fails when the header is absent; the
	// plain SVID has null claims.
	set := mustLoad(t, `
rule "allow-with-ticket" {
  effect    = "allow"
  condition = request.headers["x-ticket"] != ""
}
rule "deny-bad-model" {
  effect    = "deny"
  condition = startswith(peer.model, "untrusted/")
}
`)
	d := set.Decide(input())
	if d.Allow || len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0], "allow-with-ticket: ") {
		t.Errorf("allow rule error: %+v", d)
	}
	d = set.Decide(input(func(in *policies.Input) {
		in.Peer.Claims = nil
		in.Request.Headers = map[string][]string{"x-ticket": {"CHG-1"}}
	}))
	if d.Allow || len(d.Rules) != 1 || d.Rules[0].Name != "deny-bad-model" || len(d.Errors) != 1 {
		t.Errorf("deny rule error: %+v", d)
	}
	d = set.Decide(input(func(in *policies.Input) { in.Request.Headers = map[string][]string{"x-ticket": {"CHG-1"}} }))
	if !d.Allow || len(d.Errors) != 0 {
		t.Errorf("no error: %+v", d)
	}
}

func TestVariablesAcrossFiles(t *testing.T) {
	set, diags := policies.LoadFiles([]policies.File{
		{Name: "a.hcl", Src: []byte(`variable "approved" { value = ["` + prompt1 + `"] }`)},
		{Name: "b.hcl", Src: []byte(`rule "r" {
  effect = "allow"
  peer { prompt = var.approved }
  condition = contains(var.approved, peer.prompt)
}`)},
	})
	if diags.HasErrors() || len(diags) != 0 {
		t.Fatal(diags)
	}
	if !set.Decide(input()).Allow {
		t.Error("want allow")
	}
	in := input()
	in.Peer.Claims.Prompt = prompt2
	if set.Decide(in).Allow {
		t.Error("want deny")
	}
}

func TestExplainTrace(t *testing.T) {
	set := mustLoad(t, `
rule "a" {
  effect = "allow"
  peer { scopes_all = ["kb:write"] }
}
rule "b" {
  effect = "allow"
  action {
    http { methods = ["GET"] }
  }
}
`)
	d := set.Explain(input())
	want := []string{
		`no  allow a (p.hcl:2): peer.scopes_all: scope "kb:write" not granted (has ["kb:read" "web:search"])`,
		`YES allow b (p.hcl:6): matched`,
	}
	var got []string
	for _, e := range d.Trace {
		got = append(got, e.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("trace:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDigestAndRules(t *testing.T) {
	a := mustLoad(t, allowIf("", ""))
	b := mustLoad(t, allowIf("", "")+"\n")
	if a.Digest() == b.Digest() || !strings.HasPrefix(a.Digest(), "sha256:") {
		t.Errorf("digests %s %s", a.Digest(), b.Digest())
	}
	if r := a.Rules(); len(r) != 1 || r[0].Name != "r" || r[0].Effect != policies.Allow {
		t.Errorf("Rules() = %+v", r)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	set := mustLoad(t, `
rule "r" {
  effect = "allow"
  peer {
    spiffe_id  = ["spiffe://example.org/agent/researcher/**"]
    scopes_all = ["kb:read"]
    max_depth  = 2
  }
  action {
    http {
      methods = ["GET"]
      paths = ["/kb/**"]
    }
  }
}`)
	in := input()
	if n := testing.AllocsPerRun(100, func() { set.Decide(in) }); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
}
