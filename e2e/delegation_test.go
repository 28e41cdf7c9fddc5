package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDelegationAndRevocation: a planner task delegates a narrower
// researcher task through the registrar daemon, authenticated by its own
// X.509-SVID from the Workload API; the researcher's SVIDs carry the chain;
// escalations are refused; revoking the planner removes the researcher's
// entry and its identity.
func TestDelegationAndRevocation(t *testing.T) {
	s := newStack(t)
	reg := s.startRegistrar(t)
	planner := s.createTask("planner", "P-1", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "kb:read", "--scope", "web:search", "--principal", "spiffe://example.org/user/alice", "--ttl", "1h")
	s.inspectAs(planner, "", 30*time.Second) // the planner has its SVID

	delegate := func(task string, extra ...string) (string, error) {
		file := s.dir + "/" + task + ".json"
		args := append([]string{"run", "--task-file", planner, "--manifest-dir", s.manifestDir, "--",
			s.agentid, "task", "create", "--delegate", "--registrar", reg, "--socket", s.agent.SocketPath,
			"--agent", "researcher", "--task", task, "--model", "openai/gpt-4o", "--prompt-sha256", digest, "--output", file}, extra...)
		_, err := s.run(args...)
		return file, err
	}

	child, err := delegate("R-1", "--scope", "kb:read", "--ttl", "30m")
	if err != nil {
		t.Fatal(err)
	}
	reps := s.inspectAs(child, "kb", 30*time.Second)
	for _, r := range reps {
		c := claimsOf(t, r)
		if c.Agent != "researcher" || len(c.Chain) != 1 || c.Chain[0] != "spiffe://example.org/agent/planner/task/P-1" ||
			c.Principal != "spiffe://example.org/user/alice" || len(c.Scope) != 1 || c.Scope[0] != "kb:read" {
			t.Fatalf("%s child claims %+v", r.Kind, c)
		}
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"more scope than the parent": {[]string{"--scope", "kb:write", "--ttl", "10m"}, "scope_escalation"},
		"longer deadline":            {[]string{"--scope", "kb:read", "--deadline", time.Now().Add(3 * time.Hour).UTC().Format(time.RFC3339)}, "deadline_extension"},
	} {
		_, err := delegate("X-"+strings.ReplaceAll(name, " ", "-"), tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want a refusal mentioning %q, got %v", name, tc.want, err)
		} else {
			t.Logf("%s: %s", name, lastLine(err.Error()))
		}
	}

	// The researcher may delegate to a summarizer, but not two levels deep.
	_, err = s.run("run", "--task-file", child, "--manifest-dir", s.manifestDir, "--",
		s.agentid, "task", "create", "--delegate", "--registrar", reg, "--socket", s.agent.SocketPath,
		"--agent", "summarizer", "--task", "S-1", "--model", "local/llama3", "--prompt-sha256", digest, "--scope", "kb:read", "--ttl", "10m")
	if err == nil || !strings.Contains(err.Error(), "depth_exceeded") {
		t.Errorf("depth beyond the limit: want a refusal mentioning depth, got %v", err)
	}

	// The registrar's metrics and readiness, against the real SPIRE server.
	if code, body := httpGet(t, s.regMetrics+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q, want 200 ready", code, body)
	}
	_, metrics := httpGet(t, s.regMetrics+"/metrics")
	for _, want := range []string{
		"agentid_registrar_tasks_created_total 1\n",
		`agentid_registrar_refusals_total{reason="scope_escalation"} 1` + "\n",
		`agentid_registrar_refusals_total{reason="deadline_extension"} 1` + "\n",
		`agentid_registrar_refusals_total{reason="depth_exceeded"} 1` + "\n",
		`agentid_registrar_requests_total{code="OK",method="DelegateTask"} 1` + "\n",
		`agentid_registrar_requests_total{code="PermissionDenied",method="DelegateTask"} 3` + "\n",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("registrar /metrics lacks %q", strings.TrimSpace(want))
		}
	}

	// Revoking the planner takes the researcher with it.
	out := s.mustRun("task", "revoke", "--server-socket", s.srv.SocketPath, "spiffe://example.org/agent/planner/task/P-1")
	if !strings.Contains(out, "researcher/task/R-1") {
		t.Fatalf("revoke did not report the child:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.run("run", "--task-file", child, "--manifest-dir", s.manifestDir, "--",
			s.agentid, "svid", "inspect", "--socket", s.agent.SocketPath)
		if err != nil && strings.Contains(err.Error(), "no identity issued") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked child still gets an identity: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
