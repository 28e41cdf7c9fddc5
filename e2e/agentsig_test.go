package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/tsagent"
	"github.com/agentid/agentid/svid/httpsig"
)

const signedTicketsPolicy = `
rule "tickets-create" {
  effect            = "allow"
  reason            = "tasks holding tickets:write create tickets, with requests they signed"
  require_signature = true
  peer {
    scopes_all = ["tickets:write"]
  }
  action {
    http {
      methods = ["POST"]
      paths   = ["/tickets"]
    }
  }
}
`

// TestSignedRequestsOnRealSPIRE: a task started with `agentid run` calls a
// service through the agentid-verifier proxy, where the rule requires a
// signed request. Unsigned, it is refused (signature_missing); signed with
// its X.509-SVID key from the real SPIRE agent, it is allowed, the upstream
// gets the body, and the evidence file of that decision (audit prove)
// verifies offline with the SPIRE bundle alone and names the task, the
// method, the URI and the body's digest.
func TestSignedRequestsOnRealSPIRE(t *testing.T) {
	s := newStack(t)
	policyDir := filepath.Join(s.dir, "policies")
	os.Mkdir(policyDir, 0o755)
	writeFile(t, filepath.Join(policyDir, "tickets.hcl"), signedTicketsPolicy)

	bodies := make(chan string, 4)
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		io.WriteString(w, "created by task="+r.Header.Get("X-Agentid-Task"))
	})}
	ul, _ := net.Listen("tcp", "127.0.0.1:0")
	go upstream.Serve(ul)
	t.Cleanup(func() { upstream.Close() })

	vbin := s.buildDaemon("./cmd/agentid-verifier")
	s.srv.CreateEntry(t, "spiffe://example.org/verifier", s.agent.NodeID.String(), "unix:path:"+vbin)
	proxyAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	auditPath := filepath.Join(s.dir, "audit", "verifier.log")
	cfg := filepath.Join(s.dir, "verifier.hcl")
	writeFile(t, cfg, `
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
workload_api { socket = "`+s.agent.SocketPath+`" }
audit {
  path             = "`+auditPath+`"
  checkpoint_every = 1
}
signatures {
  window = "60s"
}
proxy {
  listen   = "`+proxyAddr+`"
  upstream = "http://`+ul.Addr().String()+`"
}
`)
	startDaemon(t, vbin, "-config", cfg)
	waitTCP(t, proxyAddr, 30*time.Second)

	task := s.createTask("planner", "P-1", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "tickets:write", "--principal", "spiffe://example.org/user/alice", "--ttl", "1h")
	kbagent := buildCmd(t, "./examples/kbagent")
	const body = `{"title":"disk full on db-3"}`
	url := "https://" + proxyAddr + "/tickets"
	call := func(extra ...string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			args := append([]string{"run", "--task-file", task, "--manifest-dir", s.manifestDir, "--",
				kbagent, "-socket", s.agent.SocketPath, "-method", "POST", "-url", url, "-body", body}, extra...)
			out, err := s.run(args...)
			if err == nil {
				return strings.TrimSpace(out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("kbagent %v: %v", extra, err)
			}
			time.Sleep(200 * time.Millisecond) // the entry is still reaching the agent
		}
	}
	if got := call(); !strings.HasPrefix(got, "401 ") || !strings.Contains(got, httpsig.ReasonMissing) {
		t.Fatalf("unsigned: %q", got)
	}
	if got := call("-sign"); got != "200 created by task=P-1" {
		t.Fatalf("signed: %q", got)
	}
	if got := <-bodies; got != body {
		t.Fatalf("upstream body %q", got)
	}
	// The TypeScript agent (examples/ts-agent): its SVID from the SPIRE
	// agent's Workload API over @grpc/grpc-js, its signature made with
	// http-message-sig, accepted by the Go verifier.
	node, agentJS := tsAgent(t)
	out, err := s.run("run", "--task-file", task, "--manifest-dir", s.manifestDir, "--",
		node, agentJS, "--socket", s.agent.SocketPath, "--method", "POST", "--url", url, "--body", body)
	if got := strings.TrimSpace(out); err != nil || got != "200 created by task=P-1" {
		t.Fatalf("TypeScript agent: %v %q", err, got)
	}
	<-bodies

	// The evidence file of the signed decision verifies offline.
	index := signedDecision(t, auditPath)
	bundle := filepath.Join(s.dir, "bundle.pem")
	writeFile(t, bundle, s.srv.Run(t, "bundle", "show"))
	receipt := filepath.Join(s.dir, "receipt.json")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := s.run("audit", "prove", "--index", strconv.Itoa(index), "--out", receipt, auditPath)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit prove: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond) // the checkpoint is on its way
	}
	out, err = s.run("audit", "verify-receipt", receipt, "--bundle", bundle)
	want := "agent signature: OK: spiffe://example.org/agent/planner/task/P-1 (its X.509-SVID key, keyid "
	wantReq := "ecdsa-p256-sha256) requested POST " + url + " with body " + httpsig.ContentDigest([]byte(body)) + " at "
	if err != nil || !strings.Contains(out, want) || !strings.Contains(out, wantReq) {
		t.Fatalf("verify-receipt: %v\n%s", err, out)
	}
	t.Logf("verify-receipt:\n%s", out)
}

// signedDecision is the index of the log's allowed decision that carries
// the agent's signature.
func signedDecision(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		var r audit.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Decision == "allow" && r.AgentSig != nil && r.AgentSig.Base != "" {
			return i
		}
	}
	t.Fatal("no signed allowed decision in the log")
	return 0
}

// tsAgent builds examples/ts-agent (internal/tsagent) and returns the
// node binary and the agent's script.
func tsAgent(t *testing.T) (node, script string) {
	t.Helper()
	node, dir := tsagent.Build(t, repoRoot(t))
	return node, filepath.Join(dir, "dist", "agent.js")
}
