package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/registrar/server"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	delegatorID   = "spiffe://example.org/agent/planner/task/T-41"
	daemonID      = "spiffe://example.org/registrar"
	delegateAgent = "spiffe://example.org/agent/researcher/task/T-42"
)

// delegateEnv serves the registrar daemon's mTLS listener on a fake SPIRE
// with the root task T-41 (planner, scope kb:read, deadline +2h), and makes
// the CLI's Workload API the test CA: the caller holds an SVID for as.
func delegateEnv(t *testing.T, as string) (addr string, fe *fakeentry.Server, ca *testca.CA) {
	t.Helper()
	fe = fakeentry.Start(t)
	conn, err := grpc.NewClient(fe.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	policy, err := registrar.ParsePolicy([]byte(taskPolicy+summarizerPolicy), "policy.hcl")
	if err != nil {
		t.Fatal(err)
	}
	r := registrar.New(conn, testTD, policy)
	if _, err := r.Create(context.Background(), registrar.Request{Agent: "planner", Task: "T-41", Model: "openai/gpt-4o",
		Prompt: taskPrompt, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", TTL: 2 * time.Hour,
		ParentID: "spiffe://example.org/spire/agent/node1"}); err != nil {
		t.Fatal(err)
	}
	ca = testca.New(t, testTD, time.Now()) // the TLS handshake checks the wall clock
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := server.New(r).AgentServer(ca.CreateX509SVID(spiffeid.RequireFromString(daemonID)), ca.X509Bundle())
	go g.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)

	caller := ca.CreateX509SVID(spiffeid.RequireFromString(as))
	old := delegateSources
	delegateSources = func(context.Context, string) (x509svid.Source, x509bundle.Source, func(), error) {
		return caller, ca.X509Bundle(), func() {}, nil
	}
	t.Cleanup(func() { delegateSources = old })
	return l.Addr().String(), fe, ca
}

func TestTaskCreateDelegate(t *testing.T) {
	addr, fe, _ := delegateEnv(t, delegatorID)
	record := filepath.Join(t.TempDir(), "T-42.json")
	code, out, errs := runCLI(t, "task", "create", "--delegate", "--registrar", addr, "--registrar-id", daemonID,
		"--agent", "researcher", "--task", "T-42", "--model", "openai/gpt-4o", "--prompt-sha256", taskPrompt,
		"--scope", "kb:read", "--ttl", "30m", "--output", record)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// The delegating agent cannot choose the child's selectors: it keeps
	// the parent's (none here); only an operator changes them.
	code, _, refused := runCLI(t, "task", "create", "--delegate", "--registrar", addr, "--registrar-id", daemonID,
		"--agent", "researcher", "--task", "T-43", "--model", "openai/gpt-4o", "--prompt-sha256", taskPrompt,
		"--scope", "kb:read", "--ttl", "30m", "--selector", "unix:uid:1001")
	if code != 1 || !strings.Contains(refused, "only an operator may change them") {
		t.Errorf("--selector in a delegation: exit %d, %s", code, refused)
	}
	for _, want := range []string{
		"SPIFFE ID: " + delegateAgent,
		"Entry ID: entry-2",
		"Parent ID: spiffe://example.org/spire/agent/node1",
		"Scope: kb:read",
		"Principal: spiffe://example.org/user/alice",
		"Depth: 1",
		"Chain[0]: " + delegatorID,
	} {
		if !strings.Contains(squash(out), squash(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := attestor.ParseTaskRecord(data[:len(data)-1])
	c := rec.Claims
	if err != nil || c.Task != "T-42" || c.Delegator() != delegatorID || data[len(data)-1] != '\n' || rec.Incarnation != entryIncarnation(t, fe.Entries()[1]) {
		t.Errorf("task record %s: %+v %v", data, c, err)
	}
	if n := len(fe.Entries()); n != 2 {
		t.Errorf("%d entries", n)
	}

	// --json; without --registrar-id any server of the caller's trust domain.
	code, out, errs = runCLI(t, "task", "create", "--delegate", "--registrar", addr, "--json",
		"--agent", "summarizer", "--model", "openai/gpt-4o", "--prompt-sha256", taskPrompt, "--deadline",
		time.Now().Add(20*time.Minute).UTC().Format(time.RFC3339))
	var v delegatedJSON
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Claims == nil || v.Claims.Delegator() != delegatorID ||
		v.ExpiresAt != v.Claims.Deadline.Unix() || !strings.HasPrefix(v.SPIFFEID, "spiffe://example.org/agent/summarizer/task/t-") {
		t.Errorf("--json: exit %d %v %s:\n%s", code, err, errs, out)
	}
}

// summarizerPolicy adds an agent that the planner may delegate to with a
// generated task ID.
const summarizerPolicy = `
agent "summarizer" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["kb:read"]
  principals = ["*"]
  delegators = ["planner"]
}
`

func TestTaskCreateDelegateErrors(t *testing.T) {
	addr, _, _ := delegateEnv(t, delegatorID)
	base := []string{"task", "create", "--delegate", "--registrar", addr, "--agent", "researcher", "--model", "openai/gpt-4o",
		"--prompt-sha256", taskPrompt, "--ttl", "30m"}
	tests := []struct {
		name  string
		extra []string
		code  int
		err   string
	}{
		{"scope escalation", []string{"--scope", "kb:write"}, 1,
			`agentid task: registrar: scope_escalation: scope "kb:write" is not held by the parent ` + delegatorID + ` (holds ["kb:read"])` + "\n"},
		{"deadline extension", []string{"--ttl", "0", "--deadline", time.Now().Add(3 * time.Hour).UTC().Format(time.RFC3339)}, 1,
			"agentid task: registrar: deadline_extension: deadline "},
		{"wrong registrar ID", []string{"--registrar-id", "spiffe://example.org/impostor"}, 1, "agentid task: registrar " + addr + ": Unavailable: "},
		{"no registrar", []string{"--registrar", ""}, 2, "agentid task: usage: --delegate needs --registrar host:port\n"},
		{"policy", []string{"--policy", "p.hcl"}, 2, "agentid task: usage: --delegate takes no --policy (the daemon holds the issuance policy)\n"},
		{"principal", []string{"--principal", "spiffe://example.org/user/bob"}, 2,
			"agentid task: usage: --delegate takes no --principal (the child inherits the caller's)\n"},
		{"parent task", []string{"--parent-task", delegatorID}, 2,
			"agentid task: usage: --delegate takes no --parent-task (the parent is the caller, by its SVID)\n"},
		{"fractional ttl", []string{"--ttl", "1500ms"}, 2, "agentid task: usage: --ttl 1.5s is not a positive number of whole seconds\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runCLI(t, args(base, tt.extra)...)
			if code != tt.code || !strings.HasPrefix(errs, tt.err) {
				t.Errorf("exit %d, stderr\n%s\nwant exit %d\n%s", code, errs, tt.code, tt.err)
			}
		})
	}
}

func TestTaskCreateDelegateNotATask(t *testing.T) {
	addr, fe, _ := delegateEnv(t, "spiffe://example.org/workload/cron")
	code, _, errs := runCLI(t, "task", "create", "--delegate", "--registrar", addr, "--agent", "researcher",
		"--model", "openai/gpt-4o", "--prompt-sha256", taskPrompt)
	want := "agentid task: registrar " + addr + ": PermissionDenied: caller spiffe://example.org/workload/cron is not an agent task: only tasks delegate\n"
	if code != 1 || errs != want || len(fe.Entries()) != 1 {
		t.Errorf("exit %d, stderr %q, want %q", code, errs, want)
	}
}
