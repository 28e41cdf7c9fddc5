package e2e

import (
	"bufio"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// readPolicy lets researchers holding kb:read GET the paths of one glob.
func readPolicy(paths string) string {
	return `
rule "kb-read" {
  effect = "allow"
  reason = "researchers read the knowledge base"
  peer {
    agent      = ["researcher"]
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["` + paths + `"]
    }
  }
}
`
}

// Broken policy files: a syntax error, and well-formed HCL with an
// attribute the policy language does not know.
const (
	syntaxErrorPolicy = `
rule "half" {
  effect = "allow"
  peer {
    agent = ["researcher"
`
	unknownAttrPolicy = `
rule "typo" {
  effect = "allow"
  peer {
    agnet = ["researcher"]
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["/typo/**"]
    }
  }
}
`
)

// TestPolicyReloadWithErrorKeepsOldPolicy: agentid-verifier on real SPIRE
// watches its policy directory; a reload that fails (syntax error, unknown
// attribute; by the file watch and by SIGHUP) is counted and flagged in the
// metrics, and the last good policy keeps deciding (same digest, same
// decision); a good change then replaces it.
func TestPolicyReloadWithErrorKeepsOldPolicy(t *testing.T) {
	s := newStack(t)
	policyDir := filepath.Join(s.dir, "policies")
	if err := os.Mkdir(policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	kb := filepath.Join(policyDir, "kb.hcl")
	broken := filepath.Join(policyDir, "broken.hcl")
	writeFile(t, kb, readPolicy("/kb/**"))

	vbin := s.buildDaemon("./cmd/agentid-verifier")
	s.srv.CreateEntry(t, "spiffe://example.org/verifier", s.agent.NodeID.String(), "unix:path:"+vbin)
	checkAddr, metricsAddr := "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:"+strconv.Itoa(freePort(t))
	cfg := filepath.Join(s.dir, "verifier.hcl")
	writeFile(t, cfg, `
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
workload_api { socket = "`+s.agent.SocketPath+`" }
check_api { listen = "`+checkAddr+`" }
metrics { listen = "`+metricsAddr+`" }
`)
	v := startDaemon(t, vbin, "-config", cfg)
	waitTCP(t, checkAddr, 30*time.Second)
	waitTCP(t, metricsAddr, 30*time.Second)

	// The peer: this test process as a researcher task holding kb:read.
	id := s.selfTask(t, rootClaims("RL-1"), 0, 0)
	leaf := s.agent.WaitX509SVID(t, 30*time.Second, func(v *x509svid.SVID) bool { return v.ID.String() == id })
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificates[0].Raw}))

	allowed := func(step, path string) map[string]any {
		t.Helper()
		out := checkAPI(t, checkAddr, cert, "GET", path)
		if out["allow"] != true || out["peer"] != id {
			t.Fatalf("%s: GET %s not allowed: %v", step, path, out)
		}
		return out
	}
	good := allowed("first policy", "/kb/doc-1")
	digest0 := good["policy_digest"]
	m := scrape(t, metricsAddr)
	if m.value("agentid_policy_last_reload_ok") != 1 {
		t.Fatalf("after start: agentid_policy_last_reload_ok %v", m.value("agentid_policy_last_reload_ok"))
	}
	errs0, oks0 := m.reloads("error"), m.reloads("ok")

	// failedReload waits until a reload failed after errs, then checks that
	// the first policy still decides.
	failedReload := func(step string, errs float64) float64 {
		t.Helper()
		m := waitMetrics(t, metricsAddr, step, func(m metrics) bool { return m.reloads("error") > errs })
		if ok := m.value("agentid_policy_last_reload_ok"); ok != 0 {
			t.Errorf("%s: agentid_policy_last_reload_ok %v, want 0", step, ok)
		}
		if out := allowed(step, "/kb/doc-2"); out["policy_digest"] != digest0 {
			t.Errorf("%s: policy digest %v, want the first policy's %v", step, out["policy_digest"], digest0)
		}
		if out := checkAPI(t, checkAddr, cert, "GET", "/typo/x"); out["allow"] != false {
			t.Errorf("%s: a rule of the broken file decides: %v", step, out)
		}
		return m.reloads("error")
	}
	// goodReload waits until a reload succeeded after oks.
	goodReload := func(step string, oks float64) metrics {
		t.Helper()
		return waitMetrics(t, metricsAddr, step, func(m metrics) bool {
			return m.reloads("ok") > oks && m.value("agentid_policy_last_reload_ok") == 1
		})
	}

	// 1. A syntax error, picked up by the file watch.
	writeFile(t, broken, syntaxErrorPolicy)
	failedReload("syntax error", errs0)

	// Back to a good directory, so that any further failure can only come
	// from the next broken file.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	m = goodReload("broken file removed", oks0)
	errs1, oks1 := m.reloads("error"), m.reloads("ok")
	if out := allowed("broken file removed", "/kb/doc-3"); out["policy_digest"] != digest0 {
		t.Errorf("same files, new digest %v, want %v", out["policy_digest"], digest0)
	}

	// 2. An unknown attribute in well-formed HCL, picked up by the file watch.
	writeFile(t, broken, unknownAttrPolicy)
	errs2 := failedReload("unknown attribute", errs1)

	// 3. SIGHUP with the broken file still there: one more failed reload.
	if err := v.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	failedReload("SIGHUP", errs2)

	// 4. A good change: the broken file goes, the rule moves to /docs/**.
	// The new policy decides: the old path is denied, the new one allowed.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	writeFile(t, kb, readPolicy("/docs/**"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		out := checkAPI(t, checkAddr, cert, "GET", "/kb/doc-4")
		if out["allow"] == false {
			if out["policy_digest"] == digest0 {
				t.Errorf("denied under the first policy's digest: %v", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fixed policy was not loaded: %v", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	allowed("fixed policy", "/docs/readme")
	m = goodReload("fixed policy", oks1)
	t.Logf("policy reloads: ok %v, error %v", m.reloads("ok"), m.reloads("error"))
}

// metrics is a Prometheus text exposition: sample line → value.
type metrics map[string]float64

// value returns the sample named name (with its labels, if any), 0 if absent.
func (m metrics) value(name string) float64 { return m[name] }

func (m metrics) reloads(result string) float64 {
	return m.value(`agentid_policy_reloads_total{result="` + result + `"}`)
}

func scrape(t *testing.T, addr string) metrics {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("metrics: %s: %s", resp.Status, b)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitMetrics scrapes until ok holds, for up to 15 s.
func waitMetrics(t *testing.T, addr, step string, ok func(metrics) bool) metrics {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := scrape(t, addr)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: metrics never got there: reloads ok=%v error=%v, last_reload_ok=%v", step,
				m.reloads("ok"), m.reloads("error"), m.value("agentid_policy_last_reload_ok"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
