package registrar

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadPolicy(t *testing.T) {
	p, err := LoadPolicy(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := p.Rule("researcher")
	if !ok {
		t.Fatal("no researcher rule")
	}
	if r.Pos != "policy.hcl:12" || r.MaxTTL != 2*time.Hour || r.MaxDepth != 2 ||
		!slices.Equal(r.Delegators, []string{"planner"}) || !slices.Equal(r.Models, []string{"openai/gpt-4o*", "local/*"}) {
		t.Errorf("researcher rule = %+v", r)
	}
	s, _ := p.Rule("summarizer")
	if s.MaxTTL != DefaultMaxTTL || s.MaxDepth != 16 {
		t.Errorf("defaults: max_ttl %s max_depth %d", s.MaxTTL, s.MaxDepth)
	}
	if _, ok := p.Rule("nobody"); ok {
		t.Error("rule for an agent without a block and no \"*\" block")
	}
}

func TestPolicyFallbackBlock(t *testing.T) {
	p, err := ParsePolicy([]byte(`
agent "*" {
  models = ["*"]
  prompts = ["*"]
  scopes = []
  principals = ["*"]
}
agent "a" {
  models = ["m"]
  prompts = ["*"]
  scopes = []
  principals = ["*"]
}`), "p.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.Rule("a"); r.Pos != "p.hcl:8" {
		t.Errorf("a: %s", r.Pos)
	}
	if r, ok := p.Rule("other"); !ok || r.Pos != "p.hcl:2" || r.Agent != "*" {
		t.Errorf("other: %+v %v", r, ok)
	}
}

const okBody = `
  models     = ["*"]
  prompts    = ["*"]
  scopes     = []
  principals = ["*"]
`

func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{{
		name: "unknown attribute",
		src:  "agent \"a\" {\n  modles = [\"*\"]\n  prompts = [\"*\"]\n  scopes = []\n  principals = [\"*\"]\n}\n",
		want: `p.hcl:2:3: Unsupported argument; An argument named "modles" is not expected here. Did you mean "models"?`,
	}, {
		name: "missing required",
		src:  "agent \"a\" {\n  models = [\"*\"]\n  prompts = [\"*\"]\n  scopes = []\n}\n",
		want: `p.hcl:1:1: Missing required argument; The argument "principals" is required (use ["*"] to allow any, [] to allow none).`,
	}, {
		name: "bad max_ttl",
		src:  "agent \"a\" {\n" + okBody + "  max_ttl = \"1 hour\"\n}\n",
		want: `p.hcl:7:13: Invalid max_ttl; "1 hour" is not a positive duration such as "30m" or "2h".`,
	}, {
		name: "negative max_depth",
		src:  "agent \"a\" {\n" + okBody + "  max_depth = -1\n}\n",
		want: `p.hcl:7:15: Invalid max_depth; -1 is not within 0..16.`,
	}, {
		name: "max_depth too large",
		src:  "agent \"a\" {\n" + okBody + "  max_depth = 17\n}\n",
		want: `p.hcl:7:15: Invalid max_depth; 17 is not within 0..16.`,
	}, {
		name: "duplicate block",
		src:  "agent \"a\" {\n" + okBody + "}\nagent \"a\" {\n" + okBody + "}\n",
		want: `p.hcl:8:7: Duplicate agent block; Agent "a" was already defined at p.hcl:1.`,
	}, {
		name: "bad agent label",
		src:  "agent \"a/b\" {\n" + okBody + "}\n",
		want: `p.hcl:1:7: Invalid agent name; "a/b" is not an agent name ([A-Za-z0-9._-]{1,128}) or "*".`,
	}, {
		name: "bad prompt digest",
		src:  "agent \"a\" {\n  models = [\"*\"]\n  prompts = [\"*\", \"sha256:ABC\"]\n  scopes = []\n  principals = [\"*\"]\n}\n",
		want: `p.hcl:3:19: Invalid prompts entry; "sha256:ABC" is not "sha256:<64 lower-case hex>" or "*".`,
	}, {
		name: "bad delegator",
		src:  "agent \"a\" {\n" + okBody + "  delegators = [\"x y\"]\n}\n",
		want: `p.hcl:7:17: Invalid delegators entry; "x y" is not an agent name pattern ([A-Za-z0-9._*-]).`,
	}, {
		name: "wrong type",
		src:  "agent \"a\" {\n  models = \"*\"\n  prompts = [\"*\"]\n  scopes = []\n  principals = [\"*\"]\n}\n",
		want: `p.hcl:2:13: Unsuitable value type; Unsuitable value: list of string required, but have string`,
	}, {
		name: "unknown block",
		src:  "agnet \"a\" {\n" + okBody + "}\n",
		want: `p.hcl:1:1: Unsupported block type; Blocks of type "agnet" are not expected here. Did you mean "agent"?`,
	}, {
		name: "syntax error",
		src:  "agent \"a\" {\n  models = [\n}\n",
		want: `p.hcl:3:1: Invalid expression; Expected the start of an expression, but found an invalid expression token.`,
	}, {
		name: "missing label",
		src:  "agent {\n" + okBody + "}\n",
		want: `p.hcl:1:7: Missing name for agent; All agent blocks must have 1 labels (name).`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tt.src), "p.hcl")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *ParseError", err)
			}
			if got := err.Error(); got != "registrar: issuance policy:\n  "+tt.want {
				t.Errorf("error:\n%s\nwant:\n  %s", got, tt.want)
			}
		})
	}
}

func TestParsePolicyReportsEveryError(t *testing.T) {
	src := "agent \"a\" {\n" + okBody + "  max_ttl = \"x\"\n  max_depth = 99\n}\n"
	_, err := ParsePolicy([]byte(src), "p.hcl")
	want := "registrar: issuance policy:\n" +
		"  p.hcl:7:13: Invalid max_ttl; \"x\" is not a positive duration such as \"30m\" or \"2h\".\n" +
		"  p.hcl:8:15: Invalid max_depth; 99 is not within 0..16."
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestPolicyHolderReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.hcl")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("agent \"a\" {\n" + okBody + "}\n")
	h, err := NewPolicyHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	first := h.Policy()
	write("agent \"a\" {\n" + okBody + "  oops = 1\n}\n")
	if err := h.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if h.Policy() != first {
		t.Fatal("a failed reload replaced the policy")
	}
	write("agent \"b\" {\n" + okBody + "}\n")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.Policy().Rule("b"); !ok {
		t.Error("reload did not take the new policy")
	}
	if _, err := NewPolicyHolder(filepath.Join(dir, "missing.hcl")); err == nil {
		t.Error("holder of a missing file")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"openai/gpt-4o*", "openai/gpt-4o", true},
		{"openai/gpt-4o*", "openai/gpt-4o-2024-08-06", true},
		{"openai/gpt-4o*", "openai/gpt-4", false},
		{"kb:read", "kb:read", true},
		{"kb:read", "kb:reader", false},
		{"*:read", "kb:read", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b", "abab", true},
		{"spiffe://example.org/user/*", "spiffe://example.org/user/alice", true},
		{"spiffe://example.org/user/*", "spiffe://evil.org/user/alice", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := match(tt.p, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestExamplePolicyLoads(t *testing.T) {
	p, err := LoadPolicy("../examples/issuance/policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for agent, pos := range map[string]string{"researcher": ":18", "anything": ":40"} {
		if r, ok := p.Rule(agent); !ok || !strings.HasSuffix(r.Pos, pos) {
			t.Errorf("%s: %+v", agent, r)
		}
	}
}

// FuzzParsePolicy: any text as an issuance policy gives a policy or an
// error naming a position, never a panic.
func FuzzParsePolicy(f *testing.F) {
	src, err := os.ReadFile("testdata/policy.hcl")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(src)
	f.Add([]byte("agent \"a\" {\n  models = [\"x/*\"]\n  max_ttl = \"1h\"\n}\n"))
	f.Add([]byte("agent \"*\" {\n  scopes = [\"kb:*\"]\n  max_depth = 99\n}\n"))
	f.Add([]byte("agent {"))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePolicy(src, "p.hcl")
		if err == nil && p == nil {
			t.Fatal("no policy and no error")
		}
		if err != nil && p != nil {
			t.Fatalf("a policy and an error: %v", err)
		}
	})
}
