package devstack_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/svid"
)

// binaries builds the agentid commands once into a folder of their own, so
// that the test can tell its processes from anyone else's.
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

func buildBinaries(t testing.TB) string {
	t.Helper()
	binaries.once.Do(func() {
		root, err := spiretest.RepoRoot()
		if err != nil {
			binaries.err = err
			return
		}
		dir, err := os.MkdirTemp("", "devstack-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/agentid", "./cmd/agentid-attestor",
			"./cmd/agentid-composer", "./cmd/agentid-registrar", "./cmd/agentid-verifier")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if revBench.st != nil {
		revBench.st.Stop()
	}
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	os.Exit(code)
}

// tlog writes the stack's progress lines to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// agentid runs the CLI built for the test with the stack's environment.
func agentid(t testing.TB, st *devstack.Stack, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(st.BinDir, "agentid"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+st.BinDir+":"+st.SpireBin+":"+os.Getenv("PATH"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("agentid %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// asTask runs COMMAND as the task of taskFile through `agentid run`,
// retrying until it succeeds (the task's entry takes about a second to
// reach the agent).
func asTask(t testing.TB, st *devstack.Stack, dir, taskFile string, command ...string) string {
	t.Helper()
	var out string
	err := devstack.Poll(context.Background(), 20*time.Second, func() (bool, error) {
		var err error
		out, err = agentid(t, st, dir, append([]string{"run", "--manifest-dir", st.ManifestDir, "--task-file", taskFile, "--"}, command...)...)
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStack(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	started := time.Now()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stack ready in %v", time.Since(started))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			st.Stop()
		}
	})

	// Every component is up.
	for _, sock := range []string{st.ServerSocket, st.AgentSocket} {
		if err := devstack.CheckHealth(ctx, sock); err != nil {
			t.Errorf("health of %s: %v", sock, err)
		}
	}
	// The server follows entry changes through SPIRE's events, not a full
	// reload of every entry per second (59% of a core at 20,000 tasks).
	if b, _ := os.ReadFile(filepath.Join(st.LogDir, "spire-server.log")); !strings.Contains(string(b), "Using events based cache") {
		t.Errorf("spire-server does not use the events based cache; its log:\n%s", b)
	}
	if fi, err := os.Stat(st.ManifestDir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("manifest dir %s: %v, mode %v; want 0750", st.ManifestDir, err, fi.Mode().Perm())
	}
	if id := peerID(t, st.RegistrarAddr); id != st.RegistrarID {
		t.Errorf("registrar mTLS listener serves %s, want %s", id, st.RegistrarID)
	}
	if conn, err := net.Dial("unix", st.RegistrarOperatorSocket); err != nil {
		t.Errorf("registrar operator socket: %v", err)
	} else {
		conn.Close()
	}
	wantStatus(t, "GET", st.Verifier.MetricsURL+"/readyz", 200)
	if st.VerifierCheckURL != st.Verifier.CheckURL || !strings.HasSuffix(st.VerifierCheckURL, "/v1/check") {
		t.Errorf("VerifierCheckURL %q", st.VerifierCheckURL)
	}

	// A root task, created with the CLI and the permissive issuance policy.
	work := t.TempDir()
	_, err = agentid(t, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
		"--parent-id", st.NodeID, "--agent", "planner", "--model", "openai/gpt-4o", "--prompt-file", st.SamplePrompt,
		"--principal", "spiffe://example.org/user/alice", "--scope", "kb:read", "--scope", "kb:write",
		"--ttl", "1h", "--output", "t.json")
	if err != nil {
		t.Fatal(err)
	}

	// A process launched with `agentid run` gets the task's SVID with the claims.
	out := asTask(t, st, work, "t.json", "agentid", "svid", "inspect", "--json", "--socket", st.AgentSocket)
	var rep struct {
		SPIFFEID string      `json:"spiffe_id"`
		Claims   svid.Claims `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("svid inspect: %v\n%s", err, out)
	}
	parentID := "spiffe://example.org/agent/planner/task/" + rep.Claims.Task
	if rep.SPIFFEID != parentID || rep.Claims.Agent != "planner" || len(rep.Claims.Scope) != 2 {
		t.Fatalf("task SVID %s with claims %+v", rep.SPIFFEID, rep.Claims)
	}

	// The task delegates over the registrar's mTLS listener.
	asTask(t, st, work, "t.json", "agentid", "task", "create", "--delegate", "--socket", st.AgentSocket,
		"--registrar", st.RegistrarAddr, "--registrar-id", st.RegistrarID, "--agent", "researcher",
		"--model", "openai/gpt-4o", "--prompt-file", st.SamplePrompt, "--scope", "kb:read", "--ttl", "30m",
		"--output", "child.json")
	child := readClaims(t, filepath.Join(work, "child.json"))
	if child.Agent != "researcher" || len(child.Chain) != 1 || child.Chain[0] != parentID {
		t.Errorf("child task %+v, want a researcher delegated by %s", child, parentID)
	}

	// The verifier's check API decides on the task's JWT-SVID.
	out = asTask(t, st, work, "t.json", filepath.Join(st.SpireBin, "spire-agent"), "api", "fetch", "jwt",
		"-audience", devstack.DefaultJWTAudience, "-socketPath", st.AgentSocket)
	lines := strings.Split(out, "\n")
	if len(lines) < 2 {
		t.Fatalf("fetch jwt: %q", out)
	}
	token := strings.TrimSpace(lines[1])
	for method, allow := range map[string]bool{"GET": true, "DELETE": false} {
		body := fmt.Sprintf(`{"jwt":%q,"action":{"kind":"http","method":%q,"path":"/kb/docs/1"}}`, token, method)
		resp, err := http.Post(st.VerifierCheckURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var dec struct {
			Allow bool   `json:"allow"`
			Peer  string `json:"peer"`
		}
		err = json.NewDecoder(resp.Body).Decode(&dec)
		resp.Body.Close()
		if err != nil || dec.Allow != allow || dec.Peer != parentID {
			t.Errorf("check %s: %+v (%v), want allow=%v for %s", method, dec, err, allow, parentID)
		}
	}

	// AuthZEN on the real SPIRE: an agent_task subject is proven by the
	// JWT-SVID the task fetched from the Workload API (the dev policy
	// allows any task); a forged token and another task's ID as subject.id
	// are refused with their codes; an asserted user gets the policy's
	// default deny.
	authzen := strings.TrimSuffix(st.VerifierCheckURL, "/v1/check") + "/access/v1/evaluation"
	for _, tc := range []struct {
		name, subject, want string
	}{
		{"the task's own JWT-SVID", fmt.Sprintf(`{"type":"agent_task","id":%q,"properties":{"jwt":%q}}`, parentID, token), "allow"},
		{"a forged JWT-SVID", fmt.Sprintf(`{"type":"agent_task","id":%q,"properties":{"jwt":%q}}`, parentID, token[:len(token)-4]+"AAAA"), "untrusted"},
		{"another task's ID", fmt.Sprintf(`{"type":"agent_task","id":"spiffe://example.org/agent/x/task/y","properties":{"jwt":%q}}`, token), "subject_mismatch"},
		{"an asserted user", `{"type":"user","id":"alice"}`, "deny"},
	} {
		body := `{"subject":` + tc.subject + `,"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`
		req, _ := http.NewRequest("POST", authzen, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Request-ID", "req-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var dec struct {
			Decision bool `json:"decision"`
			Context  struct {
				Code string `json:"code"`
			} `json:"context"`
		}
		err = json.NewDecoder(resp.Body).Decode(&dec)
		resp.Body.Close()
		got := dec.Context.Code
		switch {
		case dec.Decision:
			got = "allow"
		case got == "":
			got = "deny"
		}
		if err != nil || resp.StatusCode != 200 || got != tc.want || resp.Header.Get("X-Request-ID") != "req-1" {
			t.Errorf("AuthZEN, %s: %d %q (%v), X-Request-ID %q; want 200 %q", tc.name, resp.StatusCode, got, err, resp.Header.Get("X-Request-ID"), tc.want)
		}
	}

	// An extra verifier in proxy mode in front of a service, with its own
	// policy directory.
	var upstreamAgent string
	var upMu sync.Mutex
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upMu.Lock()
		upstreamAgent = r.Header.Get("x-agentid-agent")
		upMu.Unlock()
		io.WriteString(w, "doc 1")
	}))
	defer upstream.Close()
	policyDir := t.TempDir()
	writeFile(t, policyDir, "kb.hcl", `
rule "planner-reads" {
  effect = "allow"
  peer { agent = ["planner"] }
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`)
	kb, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: "kb", PolicyDir: policyDir, ProxyUpstream: upstream.URL, MCPPaths: []string{"/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: "kb", PolicyDir: policyDir}); err == nil {
		t.Error("a second verifier named kb started")
	}
	wantStatus(t, "GET", kb.MetricsURL+"/readyz", 200)
	// The task's X.509-SVID, written by spire-agent under `agentid run`,
	// is the client certificate.
	svidDir := filepath.Join(work, "svid")
	if err := os.Mkdir(svidDir, 0o700); err != nil {
		t.Fatal(err)
	}
	asTask(t, st, work, "t.json", filepath.Join(st.SpireBin, "spire-agent"), "api", "fetch", "x509",
		"-socketPath", st.AgentSocket, "-write", svidDir)
	client := mtlsClient(t, svidDir)
	for method, want := range map[string]int{"GET": 200, "DELETE": 403} {
		req, _ := http.NewRequest(method, kb.ProxyURL+"/kb/docs/1", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s through the proxy: %s %s, want %d", method, resp.Status, b, want)
		}
	}
	upMu.Lock()
	if upstreamAgent != "planner" {
		t.Errorf("upstream saw x-agentid-agent %q, want planner", upstreamAgent)
	}
	upMu.Unlock()

	// The kill switch on the real SPIRE: the planner is revoked; the JWT-SVID
	// and the X.509-SVID it already holds are refused by both verifiers
	// within 2 s (the registrar's liveness feed), and so is its child's
	// lineage.
	if _, err := agentid(t, st, work, "task", "revoke", "--server-socket", st.ServerSocket, parentID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	checkJWT := func() string {
		body := fmt.Sprintf(`{"jwt":%q,"action":{"kind":"http","method":"GET","path":"/kb/docs/1"}}`, token)
		resp, err := http.Post(st.VerifierCheckURL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var dec struct {
			DenyCode string `json:"deny_code"`
		}
		json.NewDecoder(resp.Body).Decode(&dec)
		return dec.DenyCode
	}
	proxyStatus := func() int {
		resp, err := mtlsClient(t, svidDir).Get(kb.ProxyURL + "/kb/docs/1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for checkJWT() != "revoked" || proxyStatus() != http.StatusUnauthorized {
		if time.Since(revoked) > 2*time.Second {
			t.Fatalf("2 s after the revocation: check API deny_code %q, proxy %d; want revoked and 401", checkJWT(), proxyStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("revocation to deny at both verifiers: %v", time.Since(revoked).Round(time.Millisecond))
	if err := kb.Stop(); err != nil {
		t.Error(err)
	}
	select {
	case <-st.Done():
		t.Fatalf("stopping an extra verifier ended the stack: %v", st.Err())
	default:
	}

	// Stop: no process and no file remains.
	procs := st.Processes()
	if len(procs) != 5 {
		t.Errorf("%d processes, want 5 (server, agent, registrar, 2 verifiers)", len(procs))
	}
	stopped = true
	if err := st.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := st.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, p := range procs {
		if ok, _ := p.Exited(); !ok {
			t.Errorf("%s (pid %d) still runs", p.Name, p.Pid())
		}
	}
	if left := processesUnder(binDir); len(left) > 0 {
		t.Errorf("processes of %s left after Stop: %v", binDir, left)
	}
	if _, err := os.Stat(st.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s remains after Stop: %v", st.Dir, err)
	}
	select {
	case <-st.Done():
	default:
		t.Error("Done not closed by Stop")
	}
	if st.Err() != nil {
		t.Errorf("Err after a clean stop: %v", st.Err())
	}
}

// peerID makes a TLS handshake with addr and returns the URI SAN of the
// server's certificate.
func peerID(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	cert := conn.ConnectionState().PeerCertificates[0]
	if len(cert.URIs) != 1 {
		t.Fatalf("%s: certificate URIs %v", addr, cert.URIs)
	}
	return cert.URIs[0].String()
}

func wantStatus(t *testing.T, method, url string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("%s %s: %s, want %d", method, url, resp.Status, want)
	}
}

func readClaims(t *testing.T, path string) svid.Claims {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := attestor.ParseTaskRecord(bytes.TrimSpace(b))
	if err != nil {
		t.Fatal(err)
	}
	return rec.Claims
}

func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mtlsClient presents the SVID spire-agent wrote into dir and trusts its
// bundle (the proxy's SVID has a SPIFFE ID, not a DNS name: check the chain
// only).
func mtlsClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(filepath.Join(dir, "bundle.0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("no bundle")
	}
	cfg := &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			inter := x509.NewCertPool()
			for _, r := range raw[1:] {
				if c, err := x509.ParseCertificate(r); err == nil {
					inter.AddCert(c)
				}
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// processesUnder lists the running processes whose executable is in dir.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			out = append(out, fmt.Sprintf("%d %s", pid, exe))
		}
	}
	return out
}

func TestMissingSpire(t *testing.T) {
	empty := t.TempDir()
	_, err := devstack.Start(context.Background(), devstack.Options{SpireBin: empty})
	want := "spire-server not found in " + empty + ": run `make spire` (builds SPIRE 1.13.3 from the Go module proxy) or pass --spire-bin DIR"
	var nf *devstack.NotFoundError
	if !errors.As(err, &nf) || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	// The same through $AGENTID_SPIRE_BIN, and with only spire-agent missing.
	fake(t, empty, "spire-server")
	t.Setenv(devstack.SpireBinEnv, empty)
	_, err = devstack.Start(context.Background(), devstack.Options{})
	if want := "spire-agent not found in " + empty + ": run `make spire`"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %s…", err, want)
	}
}

func TestMissingAgentidBinaries(t *testing.T) {
	spire := fakeDir(t, "spire-server", "spire-agent")
	bin := fakeDir(t, "agentid-registrar", "agentid-verifier")
	_, err := devstack.Start(context.Background(), devstack.Options{SpireBin: spire, BinDir: bin, PluginDir: bin})
	if want := "agentid-attestor not found in "; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("got %v, want %s… make build", err, want)
	}
	_, err = devstack.Start(context.Background(), devstack.Options{SpireBin: spire, BinDir: t.TempDir()})
	if want := "agentid-registrar not found in "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v, want %s…", err, want)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	spire := fakeDir(t, "spire-server", "spire-agent")
	bin := fakeDir(t, "agentid-registrar", "agentid-verifier", "agentid-attestor", "agentid-composer")
	dir := filepath.Join(t.TempDir(), "dev")
	_, err = devstack.Start(context.Background(), devstack.Options{SpireBin: spire, BinDir: bin, Port: port, Dir: dir})
	var pe *devstack.PortInUseError
	want := fmt.Sprintf("port %d is in use: choose another with --port", port)
	if !errors.As(err, &pe) || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was created: %v", dir, err)
	}
}

func TestDirNotEmpty(t *testing.T) {
	spire := fakeDir(t, "spire-server", "spire-agent")
	bin := fakeDir(t, "agentid-registrar", "agentid-verifier", "agentid-attestor", "agentid-composer")
	dir := t.TempDir()
	writeFile(t, dir, "precious", "x")
	_, err := devstack.Start(context.Background(), devstack.Options{SpireBin: spire, BinDir: bin, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	_, err = devstack.Start(context.Background(), devstack.Options{SpireBin: spire, BinDir: bin, Dir: long})
	if err == nil || !strings.Contains(err.Error(), "too long for unix sockets") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(long); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was left behind: %v", long, err)
	}
}

// fake writes an empty executable; the binary checks only look for files.
func fake(t *testing.T, dir, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o755); err != nil {
		t.Fatal(err)
	}
}

func fakeDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		fake(t, dir, n)
	}
	return dir
}
