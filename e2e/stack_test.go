package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/svid"
)

// stack is one SPIRE server and agent with both agentid plugins.
type stack struct {
	t           *testing.T
	srv         *spiretest.Server
	agent       *spiretest.Agent
	agentid     string // the agentid CLI
	manifestDir string
	policy      string // issuance policy file
	dir         string // scratch folder for task files
	regMetrics  string // base URL of the registrar's metrics listener, once started
}

// sameUser is the attestor configuration of the stacks whose agents run as
// the test's own uid (root in CI), like `agentid dev`: INSECURE
// allow_same_user. TestAttestEscape runs without it, with agents under
// their own uids.
const sameUser = "\nallow_same_user = true"

// newStack starts SPIRE with the composer on the server and the attestor on
// the agent (allow_same_user: see sameUser), and writes the sample issuance
// policy.
func newStack(t *testing.T) *stack { return newStackWith(t, sameUser) }

// newStackWith is newStack with attestorConf appended to the attestor's
// plugin_data.
func newStackWith(t *testing.T, attestorConf string) *stack {
	t.Helper()
	s := &stack{t: t, agentid: spiretest.BuildCmd(t, "./cmd/agentid"), dir: t.TempDir()}
	composer := spiretest.BuildCmd(t, "./cmd/agentid-composer")
	attestor := spiretest.BuildCmd(t, "./cmd/agentid-attestor")

	s.srv = spiretest.StartServer(t, spiretest.Options{
		Plugins: spiretest.PluginBlock(t, "CredentialComposer", "agentid", composer,
			`server_api_socket = "`+spiretest.SocketPlaceholder+`"`+"\ncache_ttl = \"1s\""),
	})
	s.manifestDir = filepath.Join(s.srv.Root, "tasks")
	if err := os.Mkdir(s.manifestDir, 0o750); err != nil {
		t.Fatal(err)
	}
	s.agent = s.srv.StartAgent(t, spiretest.AgentOptions{
		Plugins: spiretest.PluginBlock(t, "WorkloadAttestor", "agentid", attestor, `manifest_dir = "`+s.manifestDir+`"`+attestorConf),
	})
	s.policy = filepath.Join(s.dir, "issuance.hcl")
	if err := os.WriteFile(s.policy, []byte(issuancePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// issuancePolicy: planners delegate to researchers, researchers to
// summarizers, but a summarizer may sit at most one level deep.
const issuancePolicy = `
agent "planner" {
  models     = ["openai/gpt-4o*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write", "web:search", "tickets:*"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
  max_depth  = 2
}

agent "researcher" {
  models     = ["openai/gpt-4o*"]
  prompts    = ["` + digest + `"]
  scopes     = ["kb:read", "kb:write", "web:search"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "2h"
  max_depth  = 2
  delegators = ["planner"]
}

agent "summarizer" {
  models     = ["local/*"]
  prompts    = ["*"]
  scopes     = ["kb:read"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "30m"
  max_depth  = 1
  delegators = ["researcher"]
}
`

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := spiretest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// run runs the agentid CLI and returns stdout; on failure it returns the
// error with stderr.
func (s *stack) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.agentid, args...)
	cmd.Env = append(os.Environ(), "SPIRE_SERVER_SOCKET="+s.srv.SocketPath, "AGENTID_MANIFEST_DIR="+s.manifestDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("agentid %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (s *stack) mustRun(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// createTask creates a root task through the CLI against the SPIRE server
// and returns the task file written by --output.
func (s *stack) createTask(agent, task string, extra ...string) string {
	s.t.Helper()
	out := filepath.Join(s.dir, task+".json")
	args := append([]string{"task", "create", "--policy", s.policy, "--agent", agent, "--task", task,
		"--parent-id", s.agent.NodeID.String(), "--output", out}, extra...)
	s.mustRun(args...)
	return out
}

// report is the JSON of `agentid svid inspect`.
type report struct {
	Kind      string          `json:"kind"`
	SPIFFEID  string          `json:"spiffe_id"`
	Task      bool            `json:"task"`
	Claims    json.RawMessage `json:"claims"`
	ClaimsErr string          `json:"claims_error"`
}

// inspectAs launches `agentid svid inspect` as the task of taskFile
// through `agentid run`, polling until the SVIDs carry the claims.
func (s *stack) inspectAs(taskFile string, audience string, timeout time.Duration) []report {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		args := []string{"run", "--task-file", taskFile, "--manifest-dir", s.manifestDir, "--",
			s.agentid, "svid", "inspect", "--json", "--socket", s.agent.SocketPath}
		if audience != "" {
			args = append(args, "--audience", audience)
		}
		out, err := s.run(args...)
		if err == nil {
			var reps []report
			if err = json.Unmarshal([]byte(out), &reps); err != nil {
				var one report
				if err = json.Unmarshal([]byte(out), &one); err == nil {
					reps = []report{one}
				}
			}
			if err == nil {
				return reps
			}
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Fatalf("no SVID for %s within %v: %v", taskFile, timeout, lastErr)
	return nil
}

func claimsOf(t *testing.T, r report) svid.Claims {
	t.Helper()
	if !r.Task || r.ClaimsErr != "" {
		t.Fatalf("%s SVID %s carries no valid claims: %s", r.Kind, r.SPIFFEID, r.ClaimsErr)
	}
	c, err := svid.Parse(r.Claims)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spiretestBin(t *testing.T) string { return spiretest.Bin(t) }
