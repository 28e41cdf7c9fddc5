package policies_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

func TestMCPArguments(t *testing.T) {
	set := mustLoad(t, `
rule "write" {
  effect = "allow"
  peer { scopes_all = ["fs:write"] }
  action {
    mcp { tools = ["write_file"] }
  }
  condition = startswith(action.arguments.path, "/srv/agents/${peer.task}/")
}
rule "prompt" {
  effect = "allow"
  action {
    mcp { prompts = ["write_file"] }
  }
}
`)
	in := func(args string, scopes ...string) *policies.Input {
		return input(func(in *policies.Input) {
			in.Action = policies.Action{Kind: "mcp", Method: "tools/call", Name: "write_file", Arguments: args}
			in.Peer.Claims.Scope = scopes
		})
	}
	for _, tc := range []struct {
		args  string
		allow bool
		err   string
	}{
		{`{"path":"/srv/agents/T-42/a"}`, true, ""},
		{`{"path":"/etc/passwd"}`, false, ""},
		{`{"path":"/srv/agents/T-42/a","Path":"/etc/passwd"}`, false, `"path" and "Path"`},
		{`{"path":"/srv/agents/T-42/a","path":"/etc/passwd"}`, false, "duplicate"},
		{`["/srv/agents/T-42/a"]`, false, "not a JSON object"},
		{`{"path":"/srv/agents/T-42/a"} {}`, false, "after top-level value"},
		{``, false, "Unsupported attribute"},
	} {
		d := set.Decide(in(tc.args, "fs:write"))
		if d.Allow != tc.allow || tc.err != "" && !strings.Contains(strings.Join(d.Errors, ";"), tc.err) {
			t.Errorf("%s: allow %v errors %q; want %v, %q", tc.args, d.Allow, d.Errors, tc.allow, tc.err)
		}
	}
	// listing: some arguments could be allowed, with the scope only
	anyArgs := in("", "fs:write")
	anyArgs.AnyArguments = true
	if !set.Decide(anyArgs).Allow {
		t.Error("AnyArguments: write_file should be listed with fs:write")
	}
	anyArgs.Peer.Claims.Scope = []string{"fs:read"}
	if set.Decide(anyArgs).Allow {
		t.Error("AnyArguments: write_file listed without fs:write")
	}
	// the scope a denied call needs, when more scopes would allow it
	if got := set.MissingScopes(in(`{"path":"/srv/agents/T-42/a"}`, "fs:read")); !slices.Equal(got, []string{"fs:write"}) {
		t.Errorf("MissingScopes %q", got)
	}
	if got := set.MissingScopes(in(`{"path":"/etc/passwd"}`, "fs:read")); got != nil {
		t.Errorf("MissingScopes outside the directory: %q", got)
	}
	// a tool pattern never matches a prompt of the same name, and back
	p := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "prompts/get", Name: "write_file"}
	})
	if d := set.Decide(p); !d.Allow || d.Rules[0].Name != "prompt" {
		t.Errorf("prompt: %+v", d)
	}
	r := input(func(in *policies.Input) {
		in.Action = policies.Action{Kind: "mcp", Method: "resources/read", Name: "write_file"}
	})
	if set.Decide(r).Allow {
		t.Error("a prompt pattern matched a resource")
	}
}
