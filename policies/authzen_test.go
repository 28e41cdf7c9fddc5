package policies_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
)

const todoUsers = `{
  "rick":  {"id": "rick@the-citadel.com",  "roles": ["admin", "evil_genius"]},
  "morty": {"id": "morty@the-citadel.com", "roles": ["editor"]},
  "beth":  {"id": "beth@the-smiths.com",   "roles": ["viewer"]}
}`

const todoPolicy = `
data "users" {
  file = "users.json"
}

rule "read" {
  effect = "allow"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["can_read_user", "can_read_todos"]
    }
  }
}

rule "update" {
  effect = "allow"
  subject {
    type = "user"
  }
  resource {
    type = "todo"
  }
  action {
    authzen {
      names = ["can_update_todo"]
    }
  }
  condition = contains(data.users[subject.id].roles, "evil_genius") || (contains(data.users[subject.id].roles, "editor") && resource.properties.ownerID == data.users[subject.id].id)
}

rule "no-friday" {
  effect = "deny"
  subject {
    type = "user"
    id   = "beth"
  }
  condition = lookup(context, "day", "") == "friday"
}
`

func loadDir(t *testing.T, files map[string]string) (string, *policies.Set) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	return dir, set
}

func authzenInput(subject, action, resourceType, owner, ctx string) *policies.Input {
	in := &policies.Input{
		Subject:  policies.Entity{Type: "user", ID: subject},
		Action:   policies.Action{Kind: policies.KindAuthZEN, Name: action},
		Resource: policies.Entity{Type: resourceType, ID: "t-1"},
		Now:      now,
	}
	if owner != "" {
		in.Resource.Properties = json.RawMessage(`{"ownerID":"` + owner + `"}`)
	}
	if ctx != "" {
		in.Context = json.RawMessage(ctx)
	}
	return in
}

func TestAuthZENRulesAndData(t *testing.T) {
	_, set := loadDir(t, map[string]string{"todo.hcl": todoPolicy, "users.json": todoUsers})
	tests := []struct {
		name string
		in   *policies.Input
		want bool
	}{
		{"anyone reads", authzenInput("beth", "can_read_todos", "todo", "", ""), true},
		{"evil genius updates any", authzenInput("rick", "can_update_todo", "todo", "morty@the-citadel.com", ""), true},
		{"editor updates own", authzenInput("morty", "can_update_todo", "todo", "morty@the-citadel.com", ""), true},
		{"editor updates other's", authzenInput("morty", "can_update_todo", "todo", "rick@the-citadel.com", ""), false},
		{"viewer updates own", authzenInput("beth", "can_update_todo", "todo", "beth@the-smiths.com", ""), false},
		{"unknown user: condition error, fail closed", authzenInput("jerry", "can_update_todo", "todo", "jerry@the-smiths.com", ""), false},
		{"no ownerID: fail closed", authzenInput("morty", "can_update_todo", "todo", "", ""), false},
		{"resource type must match", authzenInput("rick", "can_update_todo", "user", "x", ""), false},
		{"unknown action", authzenInput("rick", "can_fly", "todo", "", ""), false},
		{"context read: deny on friday", authzenInput("beth", "can_read_todos", "todo", "", `{"day":"friday"}`), false},
		{"context read: other day", authzenInput("beth", "can_read_todos", "todo", "", `{"day":"monday"}`), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := set.Decide(tc.in)
			if d.Allow != tc.want {
				t.Fatalf("allow %v, want %v: %s %v", d.Allow, tc.want, d.Reason, d.Errors)
			}
		})
	}
}

// An asserted subject never matches a peer block, whatever it claims to
// be, and the subject types of authenticated peers cannot be asserted.
func TestAuthZENAssertedSubjectIsNotAPeer(t *testing.T) {
	set := mustLoad(t, `
rule "any-peer" {
  effect = "allow"
  peer {
    trust_domain = "*"
  }
}
rule "agents" {
  effect = "allow"
  subject {
    type = "agent_task"
  }
}
`)
	in := &policies.Input{Subject: policies.Entity{Type: "user", ID: "spiffe://example.org/agent/researcher/task/T-42"},
		Action: policies.Action{Kind: policies.KindAuthZEN, Name: "read"}, Now: now}
	if d := set.Decide(in); d.Allow {
		t.Fatalf("an asserted subject matched a peer block: %v", d.Rules)
	}
	in.Subject.Type = policies.SubjectAgentTask
	if d := set.Decide(in); d.Allow || !strings.Contains(d.Reason, "reserved") {
		t.Fatalf("an asserted agent_task subject: allow %v (%s)", d.Allow, d.Reason)
	}
	// The authenticated peer is the subject agent_task.
	peerIn := input()
	peerIn.Action = policies.Action{Kind: policies.KindAuthZEN, Name: "read"}
	if d := set.Decide(peerIn); !d.Allow {
		t.Fatalf("an authenticated task peer: %s", d.Reason)
	}
}

func TestAuthZENSubjectOfPeers(t *testing.T) {
	set := mustLoad(t, `
rule "workloads" {
  effect = "allow"
  subject {
    type = "workload"
    id   = "spiffe://example.org/svc/**"
  }
  condition = subject.id == peer.id && subject.type == "workload"
}
`)
	in := &policies.Input{Peer: policies.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/svc/kb")},
		Action: policies.Action{Kind: "http", Method: "GET", Path: "/x"}, Now: now}
	if d := set.Decide(in); !d.Allow {
		t.Fatalf("plain SVID as subject workload: %s %v", d.Reason, d.Errors)
	}
	in.Peer.Claims = claims()
	in.Peer.ID = spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	if d := set.Decide(in); d.Allow {
		t.Fatal("a task peer is an agent_task, not a workload")
	}
}

func TestDataFormatsAndDigest(t *testing.T) {
	policy := `
data "roles" {
  file = "data/roles.yaml"
}
rule "r" {
  effect = "allow"
  condition = contains(data.roles[subject.id], "admin")
}
`
	dir, set := loadDir(t, map[string]string{"p.hcl": policy, "data/roles.yaml": "alice:\n  - admin\nbob:\n  - viewer\n"})
	in := func(who string) *policies.Input {
		return &policies.Input{Subject: policies.Entity{Type: "user", ID: who}, Action: policies.Action{Kind: policies.KindAuthZEN, Name: "x"}, Now: now}
	}
	if !set.Decide(in("alice")).Allow || set.Decide(in("bob")).Allow {
		t.Fatal("yaml data")
	}
	if got := set.DataFiles(); len(got) != 1 || got[0] != filepath.Join(dir, "data", "roles.yaml") {
		t.Fatalf("DataFiles %v", got)
	}
	// The digest covers the data.
	os.WriteFile(filepath.Join(dir, "data", "roles.yaml"), []byte("alice: [viewer]\nbob: [admin]\n"), 0o600)
	set2, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if set2.Digest() == set.Digest() {
		t.Fatal("the digest ignores the data")
	}
	if set2.Decide(in("alice")).Allow || !set2.Decide(in("bob")).Allow {
		t.Fatal("reloaded yaml data")
	}
}

func TestDataErrorsNamePositions(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"json syntax", map[string]string{"users.json": "{\n  \"a\": [1,\n  \"b\": 2\n}\n"}, "users.json:1:1: error: Unclosed object"},
		{"yaml syntax", map[string]string{"users.yaml": "a:\n  - 1\n b: [\n"}, "users.yaml:2:1: error: Invalid YAML"},
		{"missing file", map[string]string{}, `p.hcl:3:10: error: Unreadable data file`},
		{"duplicate json key", map[string]string{"users.json": "{\"a\": 1,\n \"a\": 2}"}, "users.json:2:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := "users.json"
			if _, ok := tc.files["users.yaml"]; ok {
				file = "users.yaml"
			}
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "p.hcl"), []byte("data \"users\" {\n\n  file = \""+file+"\"\n}\nrule \"r\" {\n  effect = \"allow\"\n  condition = length(data.users) > 0\n}\n"), 0o600)
			for n, s := range tc.files {
				os.WriteFile(filepath.Join(dir, n), []byte(s), 0o600)
			}
			set, diags := policies.Load(dir)
			if set != nil || !diags.HasErrors() {
				t.Fatal("loaded")
			}
			if got := formatDiags(diags); !strings.Contains(got, tc.want) {
				t.Fatalf("diagnostics %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAuthZENConditionErrorsAtLoad(t *testing.T) {
	for _, tc := range []struct{ cond, want string }{
		{`data.userz["x"] == 1`, `There is no data source named "userz"`},
		{`subject.idd == "x"`, `Did you mean "id"?`},
		{`glob(resource.id, "x")`, "Argument from the request"},
	} {
		_, diags := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte("data \"users\" {\n  file = \"" + filepath.ToSlash(writeTemp(t, "users.json", "{}")) + "\"\n}\nrule \"r\" {\n  effect = \"allow\"\n  condition = " + tc.cond + "\n}\n")}})
		if got := formatDiags(diags); !diags.HasErrors() || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.cond, got, tc.want)
		}
	}
}

func writeTemp(t *testing.T, name, src string) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthZENTestCases(t *testing.T) {
	dir, set := loadDir(t, map[string]string{"todo.hcl": todoPolicy, "users.json": todoUsers, "todo_test.hcl": `
test "morty updates his todo" {
  authzen = {
    subject  = { type = "user", id = "morty" }
    action   = { name = "can_update_todo" }
    resource = { type = "todo", id = "t-1", properties = { ownerID = "morty@the-citadel.com" } }
  }
  expect = "allow"
  rule   = "update"
}
test "beth on friday" {
  authzen = {
    subject  = { type = "user", id = "beth" }
    action   = { name = "can_read_todos" }
    resource = { type = "todo", id = "t-1" }
    context  = { day = "friday" }
  }
  expect = "deny"
  rule   = "no-friday"
}
test "an agent task is the subject" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["kb:read"] }
  }
  authzen = {
    action   = { name = "can_read_todos" }
    resource = { type = "todo", id = "t-1" }
  }
  expect = "deny"
}
`})
	files, err := policies.ReadTestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cases, diags := set.LoadTests(files)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(cases) != 3 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, r := range set.RunTests(cases) {
		if r.Failure != "" {
			t.Errorf("%s: %s", r.Case.Name, r.Failure)
		}
	}
	// A request without subject, or a subject next to a peer block, is an error.
	_, diags = set.LoadTests([]policies.File{{Name: "bad_test.hcl", Src: []byte(`
test "no subject" {
  authzen = {
    action   = { name = "x" }
    resource = { type = "todo", id = "t" }
  }
  expect = "deny"
}
`)}})
	if !diags.HasErrors() || !strings.Contains(formatDiags(diags), "bad_test.hcl:3:") {
		t.Fatalf("diagnostics %v", diags)
	}
}
