package main

import (
	"encoding/json"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/fakeentry"
)

const taskPolicy = `agent "planner" {
  models     = ["openai/*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
}

agent "researcher" {
  models     = ["openai/*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
  delegators = ["planner"]
}
`

const taskPrompt = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// taskEnv starts a fake SPIRE Entry API, writes the policy and pins the
// task commands' clock; it returns the common flags.
func taskEnv(t *testing.T) (fe *fakeentry.Server, dir string, common []string) {
	t.Helper()
	fe = fakeentry.Start(t)
	dir = t.TempDir()
	writeFile(t, dir, "policy.hcl", []byte(taskPolicy))
	old := taskNow
	taskNow = func() time.Time { return testNow }
	t.Cleanup(func() { taskNow = old })
	return fe, dir, []string{"--server-socket", fe.SocketPath}
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestTaskLifecycle(t *testing.T) {
	fe, dir, common := taskEnv(t)
	policy := filepath.Join(dir, "policy.hcl")
	record := filepath.Join(dir, "T-41.json")
	code, out, errs := runCLI(t, args([]string{"task", "create"}, common, []string{
		"--policy", policy, "--parent-id", "spiffe://example.org/spire/agent/node1",
		"--agent", "planner", "--task", "T-41", "--model", "openai/gpt-4o", "--prompt-sha256", strings.TrimPrefix(taskPrompt, "sha256:"),
		"--scope", "kb:read", "--scope", "kb:write", "--principal", "spiffe://example.org/user/alice",
		"--ttl", "2h", "--selector", "unix:uid:1001", "--output", record})...)
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"SPIFFE ID: spiffe://example.org/agent/planner/task/T-41",
		"Entry ID: entry-1",
		"Parent ID: spiffe://example.org/spire/agent/node1",
		"Scope: kb:read kb:write",
		"Depth: 0",
		"Deadline: 2026-11-29T12:00:00Z",
		"X509-SVID TTL: 5m0s",
		"JWT-SVID TTL: 5m0s",
		"Selector: unix:uid:1001",
	} {
		if !strings.Contains(squash(out), squash(want)) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := attestor.ParseTaskRecord(data[:len(data)-1])
	c := rec.Claims
	if err != nil || c.Task != "T-41" || !c.Deadline.Equal(testNow.Add(2*time.Hour)) || rec.Incarnation != entryIncarnation(t, fe.Entries()[0]) {
		t.Errorf("task record %s: %+v %v", data, c, err)
	}

	// A delegated child, attenuated: it inherits the principal and deadline.
	code, out, errs = runCLI(t, args([]string{"task", "create"}, common, []string{
		"--policy", policy, "--agent", "researcher", "--task", "T-42", "--model", "openai/gpt-4o",
		"--prompt-sha256", taskPrompt, "--scope", "kb:read", "--json",
		"--parent-task", "spiffe://example.org/agent/planner/task/T-41"})...)
	if code != 0 {
		t.Fatalf("create child: exit %d: %s", code, errs)
	}
	var child taskJSON
	if err := json.Unmarshal([]byte(out), &child); err != nil || child.Claims == nil {
		t.Fatalf("%v: %s", err, out)
	}
	wantClaims := `{"v":1,"agent":"researcher","task":"T-42","model":"openai/gpt-4o","prompt":"` + taskPrompt +
		`","scope":["kb:read"],"principal":"spiffe://example.org/user/alice","chain":["spiffe://example.org/agent/planner/task/T-41"],"deadline":"2026-11-29T12:00:00Z"}`
	if got, _ := child.Claims.MarshalJSON(); string(got) != wantClaims || child.SPIFFEID != "spiffe://example.org/agent/researcher/task/T-42" ||
		child.ParentID != "spiffe://example.org/spire/agent/node1" || child.ExpiresAt != testNow.Add(2*time.Hour).Unix() {
		t.Errorf("child:\n%s", out)
	}

	code, out, _ = runCLI(t, args([]string{"task", "show"}, common, []string{"--agent", "researcher", "--task", "T-42"})...)
	if code != 0 || !strings.Contains(squash(out), squash("Chain[0]: spiffe://example.org/agent/planner/task/T-41")) {
		t.Errorf("show: exit %d:\n%s", code, out)
	}

	code, out, _ = runCLI(t, args([]string{"task", "list"}, common, []string{"--parent-task", "spiffe://example.org/agent/planner/task/T-41"})...)
	if code != 0 || !strings.Contains(out, "spiffe://example.org/agent/researcher/task/T-42  entry-2") || strings.Contains(out, "planner/task/T-41 ") {
		t.Errorf("list: exit %d:\n%s", code, out)
	}
	// show --output writes the live task's record again, incarnation included.
	again := filepath.Join(dir, "T-41-again.json")
	code, _, errs = runCLI(t, args([]string{"task", "show"}, common, []string{"--output", again, "spiffe://example.org/agent/planner/task/T-41"})...)
	if data, err := os.ReadFile(again); code != 0 || err != nil {
		t.Errorf("show --output: exit %d %v: %s", code, err, errs)
	} else if rec, err := attestor.ParseTaskRecord(data[:len(data)-1]); err != nil || rec.Claims.Task != "T-41" || rec.Incarnation != entryIncarnation(t, fe.Entries()[0]) {
		t.Errorf("show --output record %s: %+v %v", data, rec, err)
	}
	code, out, _ = runCLI(t, args([]string{"task", "list", "--json"}, common, []string{"--principal", "spiffe://example.org/user/alice"})...)
	var listed struct{ Tasks []taskJSON }
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed.Tasks) != 2 {
		t.Errorf("list --json: exit %d %v:\n%s", code, err, out)
	}

	// A task-shaped entry that does not decode is named on stderr; the
	// listing still succeeds with the valid tasks.
	broken := fe.Add(&types.Entry{SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/planner/task/BROKEN"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/spire/agent/node1"},
		Selectors: []*types.Selector{{Type: "agentid", Value: "task:BROKEN"}}, ExpiresAt: testNow.Add(time.Hour).Unix()})[0]
	code, out, errs = runCLI(t, args([]string{"task", "list"}, common)...)
	if code != 0 || !strings.Contains(out, "task/T-42") || !strings.Contains(errs, "skipped entry "+broken+" of spiffe://example.org/agent/planner/task/BROKEN: ") {
		t.Errorf("list with a broken entry: exit %d:\n%s\nstderr: %s", code, out, errs)
	}
	fe.Delete(broken)

	code, out, errs = runCLI(t, args([]string{"task", "revoke", "--json"}, common, []string{"spiffe://example.org/agent/planner/task/T-41"})...)
	var revoked struct{ Removed []taskJSON }
	if err := json.Unmarshal([]byte(out), &revoked); code != 0 || err != nil || len(revoked.Removed) != 2 ||
		revoked.Removed[1].SPIFFEID != "spiffe://example.org/agent/researcher/task/T-42" || revoked.Removed[1].EntryID != "entry-2" {
		t.Errorf("revoke: exit %d %v %s:\n%s", code, err, errs, out)
	}
	if n := len(fe.Entries()); n != 0 {
		t.Errorf("%d entries after revoke", n)
	}
	code, _, errs = runCLI(t, args([]string{"task", "revoke"}, common, []string{"--agent", "planner", "--task", "T-41"})...)
	if code != 1 || errs != "agentid task: registrar: not_found: no entry for spiffe://example.org/agent/planner/task/T-41: unknown task, or revoked already\n" {
		t.Errorf("second revoke: exit %d: %q", code, errs)
	}
}

func TestTaskCreatePromptFile(t *testing.T) {
	fe, dir, common := taskEnv(t)
	prompt := writeFile(t, dir, "prompt.txt", []byte("test"))
	code, out, errs := runCLI(t, args([]string{"task", "create"}, common, []string{
		"--policy", filepath.Join(dir, "policy.hcl"), "--parent-id", "spiffe://example.org/spire/agent/node1",
		"--agent", "planner", "--model", "openai/gpt-4o", "--prompt-file", prompt,
		"--principal", "spiffe://example.org/user/alice", "--deadline", "2026-11-29T11:00:00Z"})...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(squash(out), squash("Prompt: "+taskPrompt)) || !strings.Contains(out, "/agent/planner/task/t-") {
		t.Errorf("output:\n%s", out)
	}
	if e := fe.Entries(); len(e) != 1 || e[0].ExpiresAt != testNow.Add(time.Hour).Unix() {
		t.Errorf("entries %v", e)
	}
}

func TestTaskCreateErrors(t *testing.T) {
	_, dir, common := taskEnv(t)
	policy := filepath.Join(dir, "policy.hcl")
	bad := writeFile(t, dir, "bad.hcl", []byte("agent \"a\" {\n  modles = []\n}\n"))
	base := []string{"--parent-id", "spiffe://example.org/spire/agent/node1", "--agent", "planner",
		"--model", "openai/gpt-4o", "--prompt-sha256", taskPrompt, "--principal", "spiffe://example.org/user/alice", "--ttl", "1h"}
	tests := []struct {
		name  string
		extra []string
		code  int
		err   string
	}{
		{"no policy", nil, 2, "agentid task: usage: --policy is required\n"},
		{"policy does not parse", []string{"--policy", bad}, 1,
			"agentid task: registrar: issuance policy:\n  " + bad + `:2:3: Unsupported argument; An argument named "modles" is not expected here. Did you mean "models"?` + "\n"},
		{"scope not allowed", []string{"--policy", policy, "--scope", "admin"}, 1,
			`agentid task: registrar: scope_not_allowed: scope "admin" matches none of ["kb:read" "kb:write"] (rule policy.hcl:1)` + "\n"},
		{"scope escalation", []string{"--policy", policy, "--agent", "researcher", "--scope", "kb:write", "--task", "C",
			"--parent-task", "spiffe://example.org/agent/planner/task/P"}, 1,
			`agentid task: registrar: scope_escalation: scope "kb:write" is not held by the parent spiffe://example.org/agent/planner/task/P (holds ["kb:read"])` + "\n"},
		{"principal mismatch", []string{"--policy", policy, "--agent", "researcher", "--scope", "kb:read", "--task", "C",
			"--principal", "spiffe://example.org/user/bob", "--parent-task", "spiffe://example.org/agent/planner/task/P"}, 1,
			`agentid task: registrar: principal_mismatch: principal "spiffe://example.org/user/bob" differs from the parent's "spiffe://example.org/user/alice"` + "\n"},
		{"conflict", []string{"--policy", policy, "--task", "P"}, 1,
			"agentid task: registrar: conflict: task spiffe://example.org/agent/planner/task/P exists (entry entry-1)\n"},
		{"deadline and ttl", []string{"--policy", policy, "--deadline", "2026-11-29T11:00:00Z"}, 2,
			"agentid task: usage: give --deadline or --ttl, not both\n"},
		{"bad deadline", []string{"--policy", policy, "--ttl", "0", "--deadline", "tomorrow"}, 1, ""},
		{"both prompts", []string{"--policy", policy, "--prompt-file", policy}, 2,
			"agentid task: usage: give one of --prompt-sha256 and --prompt-file\n"},
		{"argument", []string{"--policy", policy, "extra"}, 2, "agentid task: usage: unexpected argument \"extra\"\n"},
	}
	code, _, errs := runCLI(t, args([]string{"task", "create"}, common, base, []string{"--policy", policy, "--task", "P", "--scope", "kb:read"})...)
	if code != 0 {
		t.Fatalf("root: %s", errs)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runCLI(t, args([]string{"task", "create"}, common, base, tt.extra)...)
			if code != tt.code || tt.err != "" && errs != tt.err {
				t.Errorf("exit %d, stderr\n%s\nwant exit %d\n%s", code, errs, tt.code, tt.err)
			}
		})
	}
}

func TestTaskUsage(t *testing.T) {
	_, _, common := taskEnv(t)
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"task"}, "agentid task: usage: agentid task <create|list|revoke|show>\n"},
		{[]string{"task", "show"}, "agentid task: usage: give a task SPIFFE ID or --agent and --task\n"},
		{[]string{"task", "revoke", "--agent", "a"}, "agentid task: usage: give a task SPIFFE ID or --agent and --task\n"},
		{[]string{"task", "list", "x"}, "agentid task: usage: unexpected argument \"x\"\n"},
	} {
		a := tt.args
		if len(a) > 1 {
			a = args(a, common)
		}
		code, _, errs := runCLI(t, a...)
		if code != 2 || errs != tt.err {
			t.Errorf("%q: exit %d, stderr %q, want %q", tt.args, code, errs, tt.err)
		}
	}
	code, _, errs := runCLI(t, args([]string{"task", "show", "--trust-domain", "Bad Domain"}, common, []string{"spiffe://x/agent/a/task/b"})...)
	if code != 1 || !strings.Contains(errs, "--trust-domain") {
		t.Errorf("bad trust domain: exit %d %s", code, errs)
	}
}
