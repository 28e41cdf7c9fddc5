// Package tsagent_test is the interop test between the TypeScript agent
// (http-message-sig from npm) and the Go packages svid/httpsig and
// verifier, in both directions. It installs the npm packages it needs
// (npm ci, the cache under the repository's .cache/npm) and builds the
// TypeScript (tsc) when they are stale (internal/tsagent).
package tsagent_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/internal/tsagent"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td     = spiffeid.RequireTrustDomainFromString("example.org")
	taskID = spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/P-1")
)

// built makes the agent ready (internal/tsagent: npm ci and tsc when
// stale, under a lock shared with the e2e test).
func built(t *testing.T) { tsagent.Build(t, "../..") }

func taskSVID(t *testing.T, ca *testca.CA, now time.Time) *x509svid.SVID {
	t.Helper()
	c := svid.Claims{V: svid.Version, Agent: "planner", Task: "P-1", Model: "openai/gpt-4o",
		Prompt: svid.PromptDigest([]byte("p")), Scope: []string{"tickets:write"}, Principal: "spiffe://example.org/user/alice",
		Deadline: now.Add(time.Hour).Truncate(time.Second).UTC()}
	ext, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ca.CreateX509SVID(taskID, testca.WithExtensions(ext))
}

// writeSVID writes s as PEM files (as spire-agent api fetch x509 -write).
func writeSVID(t *testing.T, dir string, ca *testca.CA, s *x509svid.SVID) (cert, key, bundle string) {
	t.Helper()
	var chain bytes.Buffer
	for _, c := range s.Certificates {
		pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, bundle = filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "bundle.pem")
	os.WriteFile(cert, chain.Bytes(), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(bundle, ca.BundlePEM(), 0o600)
	return cert, key, bundle
}

const payPolicy = `
rule "pay" {
  effect            = "allow"
  require_signature = true
  action {
    http {
      methods = ["POST"]
      paths   = ["/pay"]
    }
  }
}
`

// TestNodeSignsGoVerifies: the TypeScript agent signs with http-message-sig
// and calls, over SPIFFE mTLS, a service behind the Go verifier that
// requires signatures; the verifier accepts the signature, records it, and
// the record verifies offline with the Go VerifyEvidence. Unsigned, the
// same call is refused.
func TestNodeSignsGoVerifies(t *testing.T) {
	built(t)
	now := time.Now()
	ca := testca.New(t, td, now)
	dir := t.TempDir()
	cert, key, bundle := writeSVID(t, dir, ca, taskSVID(t, ca, now))
	set, diags := policies.LoadFiles([]policies.File{{Name: "pay.hcl", Src: []byte(payPolicy)}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	w, err := audit.Open(filepath.Join(dir, "audit.log"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}),
		Policy: set, Audit: w, Signatures: &verifier.Signatures{}}
	bodies := make(chan string, 2)
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		p, _ := verifier.PeerFromContext(r.Context())
		io.WriteString(w, "paid by "+p.ID().String())
	}))
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/pay")), ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	defer srv.Close()
	url := "https://" + l.Addr().String() + "/pay"
	agent := func(extra ...string) string {
		args := append([]string{"dist/agent.js", "--cert", cert, "--key", key, "--bundle", bundle,
			"--server-id", "spiffe://example.org/pay", "--method", "POST", "--url", url, "--body", `{"amount":10}`}, extra...)
		out, err := exec.Command("node", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("node %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := agent(); got != "200 paid by "+taskID.String() {
		t.Fatalf("signed by the TypeScript agent: %q", got)
	}
	if got := <-bodies; got != `{"amount":10}` {
		t.Fatalf("body %q", got)
	}
	if got := agent("--no-sign"); !strings.HasPrefix(got, "401 ") || !strings.Contains(got, httpsig.ReasonMissing) {
		t.Fatalf("unsigned: %q", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, "audit.log"))
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var rec audit.Record
	for sc.Scan() {
		var r audit.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.AgentSig != nil && r.AgentSig.Base != "" {
			rec = r
		}
	}
	if rec.AgentSig == nil {
		t.Fatal("no signed record")
	}
	p, err := httpsig.VerifyEvidence(httpsig.Evidence{Label: rec.AgentSig.Label, Base: rec.AgentSig.Base, Signature: rec.AgentSig.Sig}, ca.X509Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != taskID || p.Method != "POST" || p.TargetURI != url || p.ContentDigest != httpsig.ContentDigest([]byte(`{"amount":10}`)) {
		t.Fatalf("proven %+v", p)
	}
}

// TestGoSignsNodeVerifies: httpsig.Transport signs; a Node service verifies
// with http-message-sig (and the bundle); a body changed after signing and
// a certificate of another CA are refused there.
func TestGoSignsNodeVerifies(t *testing.T) {
	built(t)
	now := time.Now()
	ca := testca.New(t, td, now)
	dir := t.TempDir()
	task := taskSVID(t, ca, now)
	_, _, bundle := writeSVID(t, dir, ca, task)
	cmd := exec.Command("node", "dist/verify-server.js", "--bundle", bundle)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		t.Fatalf("verify-server: %q %v", line, err)
	}
	base := "http://127.0.0.1:" + strings.TrimSpace(strings.TrimPrefix(line, "listening "))
	post := func(signer *x509svid.SVID, mutate func(*http.Request)) (int, string) {
		t.Helper()
		var rt http.RoundTripper = http.DefaultTransport
		if mutate != nil {
			rt = roundTripFunc(func(r *http.Request) (*http.Response, error) { mutate(r); return http.DefaultTransport.RoundTrip(r) })
		}
		c := &http.Client{Transport: &httpsig.Transport{Base: rt, Source: signer}, Timeout: 10 * time.Second}
		resp, err := c.Post(base+"/pay?x=1", "application/json", strings.NewReader(`{"amount":10}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := post(task, nil); code != 200 || body != "verified "+taskID.String()+" POST "+base+"/pay?x=1" {
		t.Fatalf("signed by Go: %d %q", code, body)
	}
	changed := func(r *http.Request) {
		b := []byte(`{"amount":99}`)
		r.Body, r.ContentLength, r.GetBody = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	if code, body := post(task, changed); code != 401 || !strings.Contains(body, "content-digest") {
		t.Fatalf("body changed: %d %q", code, body)
	}
	foreign := taskSVID(t, testca.New(t, td, now), now)
	if code, body := post(foreign, nil); code != 401 || !strings.Contains(body, "does not chain to the bundle") {
		t.Fatalf("foreign CA: %d %q", code, body)
	}
	method := func(r *http.Request) { r.Method = "PUT" }
	if code, body := post(task, method); code != 401 {
		t.Fatalf("method changed: %d %q", code, body)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
