package policies

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/svid"
)

// TestCheckArgumentsAllocs: the verifier checks every tool call's
// arguments (CheckArguments) before deciding; the check validates them
// without building the values conditions read, which a decision builds
// only when a condition reads them.
func TestCheckArgumentsAllocs(t *testing.T) {
	const args = `{"path":"/srv/agents/T-42/out.md","content":"a short note","mode":420,"tags":["a","b"],"opts":{"create":true}}`
	if err := CheckArguments(args); err != nil {
		t.Fatal(err)
	}
	// the key sets of the three objects, no value built
	if n := testing.AllocsPerRun(100, func() { CheckArguments(args) }); n > 3 {
		t.Errorf("CheckArguments: %.0f allocations, want at most 3", n)
	}
}

// TestCheckArgumentsSameAsValue: CheckArguments refuses exactly what
// ArgumentsValue refuses (numbers cty cannot read included), with the
// same message.
func TestCheckArgumentsSameAsValue(t *testing.T) {
	for _, args := range []string{
		``, `{}`, `{"a":1}`, `{"a":1e1000000000000}`, `{"a":[1,{"b":-1e-99999999999}]}`, `{"a":1e308,"b":"x"}`,
		`[]`, `"x"`, `1`, `null`, `{"a":1}{}`, `{"a":1,"A":2}`, `{"a":1,"a":2}`, `{"a":{"b":1e9999999999,"b":2}}`,
		`{"a":1e9999999999,"a":2}`, `{"a":"\ud800"}`, `{"a":` + "\"\xff\"" + `}`, `{"a"`, `{"ſ":1,"s":2}`,
		`{"a":-0,"b":0.5e-3,"c":12345678901234567890123456789}`,
	} {
		_, want := ArgumentsValue(args)
		got := CheckArguments(args)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: CheckArguments %v, ArgumentsValue %v", args, got, want)
		}
	}
}

// FuzzCheckArguments: CheckArguments and ArgumentsValue refuse the same
// arguments with the same message.
func FuzzCheckArguments(f *testing.F) {
	for _, s := range []string{`{"path":"/srv/a","n":1e5}`, `{"a":1e1000000000000}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"A":2}`, `[1]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		_, want := ArgumentsValue(args)
		if got := CheckArguments(args); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%q: CheckArguments %v, ArgumentsValue %v", args, got, want)
		}
	})
}

// TestConditionRootsSameDecisions: a decision builds only the condition
// variables (peer, action, request, subject, resource, context) some
// condition of the set reads; deciding the example policies' test cases
// with every variable built gives the same decisions, errors and traces.
func TestConditionRootsSameDecisions(t *testing.T) {
	dirs := []string{"../examples/policies", "../examples/mcp/filesystem", "../examples/mcp/database",
		"../examples/mcp/everything", "../examples/authzen-todo/policies", "../examples/delegation/policies"}
	n := 0
	for _, dir := range dirs {
		set, diags := Load(dir)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", dir, diags)
		}
		files, err := ReadTestDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		cases, diags := set.LoadTests(files)
		if diags.HasErrors() || len(cases) == 0 {
			t.Fatalf("%s: %d cases, %v", dir, len(cases), diags)
		}
		full := *set
		full.roots, full.peerAttrs = ^rootSet(0), nil
		if set.roots == full.roots {
			t.Fatalf("%s: every root built already", dir)
		}
		for _, tc := range cases {
			for _, anyArgs := range []bool{false, true} {
				in := tc.Input
				in.AnyArguments = anyArgs && in.Action.Kind == KindMCP
				if in.Now.IsZero() {
					in.Now = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
				}
				for _, explain := range []bool{false, true} {
					got, want := set.decide(&in, explain), full.decide(&in, explain)
					if !sameDecision(got, want) {
						t.Errorf("%s %s (any arguments %v, explain %v):\n got %+v\nwant %+v", dir, tc.Name, anyArgs, explain, got, want)
					}
					n++
				}
			}
		}
	}
	t.Logf("%d decisions compared", n)
}

func sameDecision(a, b Decision) bool {
	return a.Allow == b.Allow && a.Reason == b.Reason && slices.Equal(a.RuleNames(), b.RuleNames()) &&
		slices.Equal(a.Errors, b.Errors) && slices.Equal(a.Trace, b.Trace) && a.RequireSignature == b.RequireSignature
}

// TestDecideConditionAllocs: a decision whose conditions read the peer
// and the arguments builds those two variables only (not the request's
// headers, nor the arguments twice).
func TestDecideConditionAllocs(t *testing.T) {
	set, diags := LoadFiles([]File{{Name: "p.hcl", Src: []byte(`
rule "write" {
  effect = "allow"
  action {
    mcp { tools = ["write_file"] }
  }
  condition = startswith(action.arguments.path, "/srv/agents/${peer.task}/")
}`)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	in := &Input{
		Peer: Peer{ID: id, Claims: &svid.Claims{Agent: "researcher", Task: "T-42", Scope: []string{"fs:read", "fs:write"},
			Chain: []string{"spiffe://example.org/agent/lead/task/T-1"}, Deadline: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}},
		Action:  Action{Kind: KindMCP, Method: MCPToolsCall, Name: "write_file", Arguments: `{"path":"/srv/agents/T-42/out.md","content":"a short note"}`},
		Request: Request{Headers: map[string][]string{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}, "Mcp-Protocol-Version": {"2025-11-25"}, "User-Agent": {"agent/1"}}},
		Now:     time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	if d := set.Decide(in); !d.Allow {
		t.Fatalf("%+v", d)
	}
	n := testing.AllocsPerRun(200, func() { set.Decide(in) })
	t.Logf("%.0f allocations per decision", n)
	if n > 60 {
		t.Errorf("Decide: %.0f allocations, want at most 60", n)
	}
}

// TestConditionRootsForms: the variables and peer attributes a set
// builds follow every way a condition can name them (attribute, literal
// index, computed index, the whole object, for-expressions, templates,
// can); each rule decides as with every variable built.
func TestConditionRootsForms(t *testing.T) {
	for _, cond := range []string{
		`peer.task == "T-42"`,
		`peer["task"] == "T-42"`,
		`peer[var.attr] == "T-42"`,
		`length([for k, v in peer : k]) == 13`,
		`contains(keys(peer), "deadline_remaining")`,
		`"${peer.agent}/${peer.task}" == "researcher/T-42"`,
		`can(peer.scopes[1]) && peer.depth == 1`,
		`peer.deadline_remaining > 0 && peer.is_task`,
		`request.headers["x-ticket"] == "7"`,
		`contains(keys(request.headers), "x-ticket")`,
		`action.name == "write_file" && startswith(action.arguments.path, "/srv/")`,
		`length(keys(action)) == 6`,
		`now != "" && peer.trust_domain == "example.org"`,
	} {
		src := `
variable "attr" {
  value = "task"
}
rule "r" {
  effect = "allow"
  action {
    mcp { tools = ["write_file"] }
  }
  condition = ` + cond + `
}
rule "other" {
  effect = "allow"
  action {
    mcp { tools = ["read_file"] }
  }
  condition = peer.agent != ""
}`
		set, diags := LoadFiles([]File{{Name: "p.hcl", Src: []byte(src)}})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", cond, diags)
		}
		full := *set
		full.roots, full.peerAttrs = ^rootSet(0), nil
		id := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
		for _, claims := range []*svid.Claims{nil, {Agent: "researcher", Task: "T-42", Scope: []string{"fs:read", "fs:write"},
			Chain: []string{"spiffe://example.org/agent/lead/task/T-1"}, Deadline: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}} {
			for _, anyArgs := range []bool{false, true} {
				in := &Input{Peer: Peer{ID: id, Claims: claims},
					Action:       Action{Kind: KindMCP, Method: MCPToolsCall, Name: "write_file", Arguments: `{"path":"/srv/a"}`},
					Request:      Request{Headers: map[string][]string{"X-Ticket": {"7"}}},
					Now:          time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
					AnyArguments: anyArgs}
				got, want := set.Explain(in), full.Explain(in)
				if !sameDecision(got, want) {
					t.Errorf("%s (claims %v, any arguments %v):\n got %+v\nwant %+v", cond, claims != nil, anyArgs, got, want)
				}
				if claims != nil && !anyArgs && !got.Allow {
					t.Errorf("%s: denied: %+v", cond, got)
				}
			}
		}
	}
}

// TestCheckArgumentsRoundedIntegers: a policy reads an argument's number
// exactly, while JavaScript servers (and Go servers decoding into any)
// round it to float64: 9007199254740993 is another number to a condition
// than to such a tool, which runs it as 9007199254740992 — a deny on the
// latter would be sidestepped by the former (review 4). An integer that
// float64 cannot hold exactly is refused; one it holds exactly, however
// large, is not.
func TestCheckArgumentsRoundedIntegers(t *testing.T) {
	for _, tc := range []struct {
		args string
		ok   bool
	}{
		{`{"account_id":9007199254740993}`, false},
		{`{"a":{"b":[1,-9007199254740993]}}`, false},
		{`{"id":123456789012345678901234567890}`, false},
		{`{"account_id":9007199254740992}`, true},
		{`{"big":1152921504606846976}`, true}, // 2^60: exact in float64
		{`{"n":12,"x":-3,"f":0.5,"e":1e3}`, true},
		{`{"s":"9007199254740993"}`, true}, // a string is a string
	} {
		err := CheckArguments(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.args, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "float64") {
			t.Errorf("%s: the error does not say why: %v", tc.args, err)
		}
	}
}
