package policies_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentid/agentid/policies"
)

// hclString quotes s as an HCL string literal: the escapes of HCL's
// templates ("\\", "\"", "\uNNNN", "$${", "%%{").
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", c)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c)
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// pathPolicy is the R1 policy: /kb/** allowed, pattern denied. The
// pattern's string starts at line 11, column 16.
func pathPolicy(pattern string) string {
	return `rule "read" {
  effect = "allow"
  action {
    http { paths = ["/kb/**"] }
  }
}
rule "no-keys" {
  effect = "deny"
  action {
    http {
      paths = [` + hclString(pattern) + `]
    }
  }
}
`
}

// TestNonCanonicalPathPatternRefused: a path pattern whose literal parts
// are not canonical can never match a path the verifier decides (it only
// decides canonical paths), so the deny it was meant for never applies.
// Loading refuses it at file:line:col and names the canonical spelling,
// or says why there is none.
func TestNonCanonicalPathPatternRefused(t *testing.T) {
	for _, c := range []struct{ pattern, want string }{
		// the review's R1 policies
		{"/kb/my docs/**", `write "/kb/my%20docs/**"`},
		{"/kb/café/**", `write "/kb/caf%C3%A9/**"`},
		// encoded characters that the verifier only accepts literally
		{"/kb/%40ops/**", `write "/kb/@ops/**"`},
		{"/kb/%41dmin/**", `write "/kb/Admin/**"`},
		{"/kb/%7euser/**", `write "/kb/~user/**"`},
		{"/v1/jobs/*%3Acancel", `write "/v1/jobs/*:cancel"`},
		{"/kb/%21%24%26%27%28%29%2B%2C%3D", `write "/kb/!$&'()+,="`},
		// lower-case hex
		{"/kb/caf%c3%a9/**", `write "/kb/caf%C3%A9/**"`},
		{"/kb/a%3b/**", `write "/kb/a%3B/**"`},
		// bytes that are never literal in a canonical path
		{"/kb/a;v=1/**", `write "/kb/a%3Bv=1/**"`},
		{"/kb/a?b", `write "/kb/a%3Fb"`},
		{"/kb/a#b", `write "/kb/a%23b"`},
		{"/kb/100%", `write "/kb/100%25"`},
		{"/kb/50%zz", `write "/kb/50%25zz"`},
		{"/kb/{id}/x", `write "/kb/%7Bid%7D/x"`},
		{"/kb/[x]", `write "/kb/%5Bx%5D"`},
		{"/kb/\"<>^`|", `write "/kb/%22%3C%3E%5E%60%7C"`},
		{"/kb/a\tb", `write "/kb/a%09b"`},
		{"/kb/a\x7fb", `write "/kb/a%7Fb"`},
		// dot and empty segments
		{"/kb/./x/**", `write "/kb/x/**"`},
		{"/kb/x/../y", `write "/kb/y"`},
		{"/kb//x", `write "/kb/x"`},
		{"/kb/x/.", `write "/kb/x/"`},
		{"/kb/*/./x", `write "/kb/*/x"`},
		// no canonical spelling: the verifier refuses these in any form
		{"/kb/a%2Fb", `the verifier refuses "%2F"`},
		{"/kb/a%2fb", `the verifier refuses "%2F"`},
		{"/kb/a%5Cb", `the verifier refuses "%5C"`},
		{"/kb/a%00b", `the verifier refuses "%00"`},
		{"/kb/a\\b", `the verifier refuses "\\"`},
		{"/kb/a\x00b", `the verifier refuses "\x00"`},
		{"/kb/%2A", `a literal "*" in a path is matched by a wildcard`},
		{"/kb/**/../x", `".." after a wildcard`},
	} {
		t.Run(c.pattern, func(t *testing.T) {
			set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(pathPolicy(c.pattern))}})
			if set != nil || !diags.HasErrors() {
				t.Fatalf("%q loads (diagnostics: %v): a deny with it never matches a decided path", c.pattern, diags)
			}
			got := formatDiags(diags)
			wantPrefix := "p.hcl:11:16: error: Non-canonical path pattern: The pattern " + fmt.Sprintf("%q", c.pattern) + ` of "paths" `
			if len(diags) != 1 || !strings.HasPrefix(got, wantPrefix) || !strings.Contains(got, c.want) || !strings.Contains(got, "docs/policy.md#what-the-path-is") {
				t.Errorf("diagnostics:\n%s\nwant one starting %q containing %q", got, wantPrefix, c.want)
			}
		})
	}
}

// TestCanonicalPathPatternsLoad: canonical patterns, with wildcards in
// any position (also inside an escape: "%*"), load; and written
// canonically the R1 deny applies to the paths the verifier decides.
func TestCanonicalPathPatternsLoad(t *testing.T) {
	for _, p := range []string{
		"/kb/my%20docs/**", "/kb/caf%C3%A9/**", "/kb/@ops/**", "/v1/jobs/*:cancel",
		"/kb/a%3Bv=1/**", "/kb/!$&'()+,=:@~-._", "/kb/", "/", "/**", "**", "/kb/*/x/*",
		"/kb/%*", "/kb/%E*", "/kb/%**", "/kb/..x/*.", "/kb/x.../.*", "/kb/%25", "/kb/%7B*%7D",
	} {
		set, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(pathPolicy(p))}})
		if set == nil || diags.HasErrors() {
			t.Errorf("%q: %s", p, formatDiags(diags))
		}
	}
	set := mustLoad(t, pathPolicy("/kb/my%20docs/**")+`rule "no-cafe" {
  effect = "deny"
  action {
    http { paths = ["/kb/caf%C3%A9/**", "/kb/@ops/**"] }
  }
}
`)
	for path, allow := range map[string]bool{
		"/kb/my%20docs/keys": false, "/kb/caf%C3%A9/keys": false, "/kb/@ops/keys": false,
		"/kb/other/keys": true,
	} {
		d := set.Decide(input(func(in *policies.Input) { in.Action.Path = path }))
		if d.Allow != allow {
			t.Errorf("%s: allow %v, want %v (%s)", path, d.Allow, allow, d.Reason)
		}
	}
}

// TestTestActionPathCanonical: a policy test or `agentid policy eval` with
// a path the verifier would refuse ("/kb/café/keys") decides a request
// that never reaches the policy, and passed against the inert literal
// deny: ParseAction refuses it, naming the canonical path. "*" is a
// literal character in a path.
func TestTestActionPathCanonical(t *testing.T) {
	for s, want := range map[string]string{
		"http GET /kb/café/keys":      `write "/kb/caf%C3%A9/keys"`,
		"http GET /kb/caf%c3%a9/keys": `write "/kb/caf%C3%A9/keys"`,
		"http GET /kb/%40ops/keys":    `write "/kb/@ops/keys"`,
		"http GET /kb/x/../keys":      `write "/kb/keys"`,
		"http GET /kb//keys":          `write "/kb/keys"`,
		"http GET /kb/a;v=1":          `write "/kb/a%3Bv=1"`,
		"http GET /kb/%2A":            `write "/kb/*"`,
		"http GET /kb/100%":           `write "/kb/100%25"`,
		"http GET /kb/a%2Fb":          `the verifier refuses "%2F"`,
	} {
		_, err := policies.ParseAction(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %s", s, err, want)
		}
	}
	for _, s := range []string{"http GET /kb/caf%C3%A9/keys", "http GET /kb/@ops/keys", "http GET /kb/a*b", "http GET /kb/", "http GET /"} {
		if _, err := policies.ParseAction(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	set := mustLoad(t, pathPolicy("/kb/caf%C3%A9/**"))
	_, diags := set.LoadTests([]policies.File{{Name: "p_test.hcl", Src: []byte(`test "cafe" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
  }
  action = "http GET /kb/café/keys"
  expect = "deny"
}
`)}})
	got := formatDiags(diags)
	if !strings.HasPrefix(got, `p_test.hcl:5:12: error: Invalid action: "http GET /kb/café/keys": the path is not canonical: write "/kb/caf%C3%A9/keys"`) {
		t.Errorf("diagnostics:\n%s", got)
	}
}
