package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const examplePolicies = "../../examples/policies"

// TestPolicyTestExamples runs "agentid policy test" on the example corpus
// in-process, so that make test proves the examples pass.
func TestPolicyTestExamples(t *testing.T) {
	code, out, errOut := runCLI(t, "policy", "test", examplePolicies)
	if code != 0 || !strings.HasSuffix(out, "20 passed, 0 failed\n") || errOut != "" {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestPolicyTestFailure(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\n  effect = \"allow\"\n  action {\n    mcp { tools = [\"search\"] }\n  }\n}\n"))
	writeFile(t, dir, "p_test.hcl", []byte(`
test "search" {
  peer { spiffe_id = "spiffe://example.org/x" }
  action = "mcp search"
  expect = "allow"
  rule   = "r"
}
test "shell" {
  peer { spiffe_id = "spiffe://example.org/x" }
  action = "mcp shell"
  expect = "allow"
}
`))
	code, out, _ := runCLI(t, "policy", "test", "-v", dir)
	if code != 1 || !strings.Contains(out, "FAIL shell (") || !strings.Contains(out, "got deny, want allow") ||
		!strings.Contains(out, "\n1 passed, 1 failed\n") || !strings.Contains(out, "ok   search") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "policy", "test", "-run", "^search$", dir)
	if code != 0 || out != "1 passed, 0 failed\n" {
		t.Fatalf("-run: exit %d\n%s", code, out)
	}
}

func TestPolicyLint(t *testing.T) {
	code, out, _ := runCLI(t, "policy", "lint", examplePolicies)
	if code != 0 || out != "0 error(s), 0 warning(s)\n" {
		t.Fatalf("examples: exit %d\n%s", code, out)
	}
	dir := t.TempDir()
	writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\n  effect = \"allow\"\n  peer {\n    scopes_al = [\"x\"]\n  }\n}\n"))
	code, out, _ = runCLI(t, "policy", "lint", dir)
	want := filepath.Join(dir, "p.hcl") + `:4:5: error: Unsupported argument: An argument named "scopes_al" is not expected here. Did you mean "scopes_all"?` + "\n1 error(s), 0 warning(s)\n"
	if code != 1 || out != want {
		t.Fatalf("exit %d\n%s\nwant\n%s", code, out, want)
	}
	// a costly pattern is a warning, named by file:line:col (issue 16)
	writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\n  effect = \"allow\"\n  action {\n    http { paths = [\"/kb/**a**b**c**d**e\"] }\n  }\n}\n"))
	code, out, _ = runCLI(t, "policy", "lint", dir)
	want = filepath.Join(dir, "p.hcl") + `:4:21: warning: Costly pattern: The pattern "/kb/**a**b**c**d**e" of "paths" has 5 "**" (more than 4)`
	if code != 0 || !strings.HasPrefix(out, want) || !strings.HasSuffix(out, "\n0 error(s), 1 warning(s)\n") {
		t.Fatalf("costly pattern: exit %d\n%s\nwant\n%s…", code, out, want)
	}
	// a deny on a path written as people write paths (a space, "é") never
	// matches a decided path, which is canonical: an error naming the
	// canonical spelling, so the deny is not silently inert
	writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\n  effect = \"deny\"\n  action {\n    http { paths = [\"/kb/**/x\", \"/kb/my docs/**\", \"/kb/café/**\"] }\n  }\n}\n"))
	code, out, _ = runCLI(t, "policy", "lint", dir)
	suffix := ` (the verifier decides paths in canonical form: docs/policy.md#what-the-path-is).`
	want = filepath.Join(dir, "p.hcl") + `:4:33: error: Non-canonical path pattern: The pattern "/kb/my docs/**" of "paths" is not canonical: write "/kb/my%20docs/**"` + suffix + "\n" +
		filepath.Join(dir, "p.hcl") + `:4:51: error: Non-canonical path pattern: The pattern "/kb/café/**" of "paths" is not canonical: write "/kb/caf%C3%A9/**"` + suffix + "\n" +
		"2 error(s), 0 warning(s)\n"
	if code != 1 || out != want {
		t.Fatalf("non-canonical path: exit %d\n%s\nwant\n%s", code, out, want)
	}
}

func TestPolicyFmt(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\neffect = \"allow\"\n  reason=\"x\"\n}\n"))
	want := "rule \"r\" {\n  effect = \"allow\"\n  reason = \"x\"\n}\n"
	if code, out, _ := runCLI(t, "policy", "fmt", p); code != 0 || out != want {
		t.Fatalf("print: exit %d\n%q", code, out)
	}
	if code, out, _ := runCLI(t, "policy", "fmt", "-check", dir); code != 3 || out != p+"\n" {
		t.Fatalf("-check: exit %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "policy", "fmt", "-w", dir); code != 0 {
		t.Fatalf("-w: exit %d", code)
	}
	if got, _ := os.ReadFile(p); string(got) != want {
		t.Fatalf("-w wrote %q", got)
	}
	if code, out, _ := runCLI(t, "policy", "fmt", "-check", dir); code != 0 || out != "" {
		t.Fatalf("-check after -w: exit %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "policy", "fmt", "-check", examplePolicies); code != 0 {
		t.Fatal("examples are not formatted")
	}
}

func TestPolicyEvalClaims(t *testing.T) {
	c := testClaims()
	claimsPath := writeFile(t, t.TempDir(), "claims.json", c.AppendJSON(nil))
	code, out, errOut := runCLI(t, "policy", "eval", examplePolicies, "--claims", claimsPath,
		"--action", "http GET /kb/docs/1", "--now", "2026-11-29T10:00:00Z")
	want := "allow: researchers with kb:read may read the knowledge base\n  rule kb-read (kb.hcl:3)\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "policy", "eval", "--json", "--trace", "--claims", string(c.AppendJSON(nil)),
		"--action", "http DELETE /kb/docs/1", "--now", "2026-11-29T10:00:00Z", examplePolicies)
	var d decisionOut
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 {
		t.Fatalf("exit %d: %v\n%s", code, err, out)
	}
	if d.Decision != "deny" || len(d.Rules) != 1 || d.Rules[0].Name != "kb-no-deletes" || d.Rules[0].Line != 47 ||
		len(d.Trace) != 8 || !strings.HasPrefix(d.PolicyDigest, "sha256:") {
		t.Fatalf("decision %+v", d)
	}
}

func TestPolicyEvalPeerPEM(t *testing.T) {
	svidPath, _, _ := taskSVIDFiles(t, testClaims())
	code, out, errOut := runCLI(t, "policy", "eval", examplePolicies, "--peer", svidPath,
		"--action", "grpc /kb.v1.KB/Search", "--now", "2026-11-29T10:00:00Z")
	if code != 0 || !strings.HasPrefix(out, "allow: ") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestPolicyEvalUsage(t *testing.T) {
	for _, args := range [][]string{
		{"policy", "eval", examplePolicies},
		{"policy", "eval", examplePolicies, "--claims", "{}", "--peer", "x.pem", "--action", "mcp x"},
		{"policy", "eval", examplePolicies, "--claims", "{}", "--action", "nonsense"},
		{"policy", "lint"},
		{"policy", "frobnicate"},
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	dir := t.TempDir()
	writeFile(t, dir, "p.hcl", []byte("rule \"r\" {\n  effect = \"alow\"\n}\n"))
	code, _, errOut := runCLI(t, "policy", "eval", dir, "--claims", string(testClaims().AppendJSON(nil)), "--action", "mcp x")
	if code != 1 || !strings.Contains(errOut, `p.hcl:2:12: error: Invalid effect: The effect must be "allow" or "deny". Did you mean "allow"?`) {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}
