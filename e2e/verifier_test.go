package e2e

import (
	"bytes"
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
)

// kbPolicy: researchers read the knowledge base only when a planner task
// is the root of their chain; ticket creation needs tickets:write.
const kbPolicy = `
rule "kb-read" {
  effect = "allow"
  reason = "researchers delegated by a planner read the knowledge base"
  peer {
    agent      = ["researcher"]
    scopes_all = ["kb:read"]
    chain_root = ["spiffe://example.org/agent/planner/task/*"]
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}

rule "tickets-create" {
  effect = "allow"
  reason = "tasks holding tickets:write create tickets"
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

// TestVerifierOnRealSPIRE: agent tasks call a service through the
// agentid-verifier mTLS proxy and a service built on the verifier library;
// requests are allowed and denied by scope and by lineage; the verifier
// keeps deciding while the SPIRE agent is down and recovers after; the
// audit log verifies against the SPIRE bundle.
func TestVerifierOnRealSPIRE(t *testing.T) {
	s := newStack(t)
	policyDir := filepath.Join(s.dir, "policies")
	os.Mkdir(policyDir, 0o755)
	writeFile(t, filepath.Join(policyDir, "kb.hcl"), kbPolicy)

	// The upstream behind the proxy echoes the identity headers it got.
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.Method+" "+r.URL.Path+" agent="+r.Header.Get("X-Agentid-Agent")+" task="+r.Header.Get("X-Agentid-Task"))
	})}
	ul, _ := net.Listen("tcp", "127.0.0.1:0")
	go upstream.Serve(ul)
	t.Cleanup(func() { upstream.Close() })

	// agentid-verifier: proxy + check API + metrics, bundles and its SVID from SPIRE.
	vbin := s.buildDaemon("./cmd/agentid-verifier")
	s.srv.CreateEntry(t, "spiffe://example.org/verifier", s.agent.NodeID.String(), "unix:path:"+vbin)
	proxyAddr, checkAddr := "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:"+strconv.Itoa(freePort(t))
	auditPath := filepath.Join(s.dir, "audit", "verifier.log")
	cfg := filepath.Join(s.dir, "verifier.hcl")
	writeFile(t, cfg, `
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
workload_api { socket = "`+s.agent.SocketPath+`" }
audit {
  path             = "`+auditPath+`"
  checkpoint_every = 3
}
proxy {
  listen   = "`+proxyAddr+`"
  upstream = "http://`+ul.Addr().String()+`"
}
check_api { listen = "`+checkAddr+`" }
`)
	startDaemon(t, vbin, "-config", cfg)
	waitTCP(t, proxyAddr, 30*time.Second)

	// kbservice: the same policy through the verifier library.
	kbin := s.buildDaemon("./examples/kbservice")
	s.srv.CreateEntry(t, "spiffe://example.org/kb", s.agent.NodeID.String(), "unix:path:"+kbin)
	kbAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	startDaemon(t, kbin, "-listen", kbAddr, "-policies", policyDir, "-socket", s.agent.SocketPath)
	waitTCP(t, kbAddr, 30*time.Second)

	// Tasks: a planner, a researcher it delegated, and a researcher started
	// on its own (same scopes, wrong lineage).
	planner := s.createTask("planner", "P-1", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "kb:read", "--scope", "tickets:write", "--principal", "spiffe://example.org/user/alice", "--ttl", "1h")
	child := s.createTask("researcher", "R-1", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "kb:read", "--ttl", "30m", "--parent-task", "spiffe://example.org/agent/planner/task/P-1")
	loner := s.createTask("researcher", "R-2", "--model", "openai/gpt-4o", "--prompt-sha256", digest,
		"--scope", "kb:read", "--principal", "spiffe://example.org/user/alice", "--ttl", "30m")
	kbagent := buildCmd(t, "./examples/kbagent")
	call := func(task, method, url string) string {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, err := s.run("run", "--task-file", task, "--manifest-dir", s.manifestDir, "--",
				kbagent, "-socket", s.agent.SocketPath, "-method", method, "-url", url)
			if err == nil {
				return strings.TrimSpace(out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s as %s: %v", method, url, filepath.Base(task), err)
			}
			time.Sleep(200 * time.Millisecond) // the entry is still reaching the agent
		}
	}

	for _, front := range []struct{ name, base, okBody string }{
		{"proxy", "https://" + proxyAddr, "upstream GET /kb/doc-1 agent=researcher task=R-1"},
		{"library", "https://" + kbAddr, "document doc-1 for researcher (task R-1 on behalf of spiffe://example.org/user/alice)"},
	} {
		if got := call(child, "GET", front.base+"/kb/doc-1"); got != "200 "+front.okBody {
			t.Errorf("%s: delegated researcher reads: %q", front.name, got)
		}
		if got := call(child, "POST", front.base+"/tickets"); !strings.HasPrefix(got, "403 ") {
			t.Errorf("%s: researcher without tickets:write creates a ticket: %q", front.name, got)
		}
		if got := call(loner, "GET", front.base+"/kb/doc-1"); !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "no rule") {
			t.Errorf("%s: researcher with no planner in its chain reads: %q", front.name, got)
		}
		if got := call(planner, "POST", front.base+"/tickets"); !strings.HasPrefix(got, "200 ") {
			t.Errorf("%s: planner creates a ticket: %q", front.name, got)
		}
	}

	// The Workload API goes away: the verifier keeps deciding with the last
	// bundle (through its check API, with a certificate fetched before).
	certDir := filepath.Join(s.dir, "child-svid")
	os.Mkdir(certDir, 0o700)
	s.mustRun("run", "--task-file", child, "--manifest-dir", s.manifestDir, "--",
		filepath.Join(spiretestBin(t), "spire-agent"), "api", "fetch", "x509", "-socketPath", s.agent.SocketPath, "-write", certDir)
	pem := string(mustRead(t, filepath.Join(certDir, "svid.0.pem")))
	s.agent.Stop(t)
	if out := checkAPI(t, checkAddr, pem, "GET", "/kb/doc-9"); out["allow"] != true {
		t.Fatalf("check while the SPIRE agent is down: %v", out)
	}
	s.agent.Restart(t)
	if got := call(child, "GET", "https://"+proxyAddr+"/kb/doc-2"); !strings.HasPrefix(got, "200 ") {
		t.Fatalf("after the agent came back: %q", got)
	}

	// The decision log verifies against the trust bundle SPIRE serves.
	bundle := filepath.Join(s.dir, "bundle.pem")
	writeFile(t, bundle, s.srv.Run(t, "bundle", "show"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := s.run("audit", "verify", "--bundle", bundle, auditPath)
		if err == nil && strings.Contains(out, "signed checkpoint(s) by spiffe://example.org/verifier") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit verify: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func checkAPI(t *testing.T, addr, pem, method, path string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"certificate": pem, "action": map[string]string{"Kind": "http", "Method": method, "Path": path}})
	resp, err := http.Post("http://"+addr+"/v1/check", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}
