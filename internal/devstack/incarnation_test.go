package devstack_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TestWatchSVIDHelper is not a test: with AGENTID_TEST_WATCH=<agent
// socket> it is a long-lived agent that fetches its X.509-SVID from the
// Workload API every 300 ms and prints each new one ("svid <serial>
// <notBefore> <base64 DER>") or a change to an error ("err <message>").
func TestWatchSVIDHelper(t *testing.T) {
	sock := os.Getenv("AGENTID_TEST_WATCH")
	if sock == "" {
		return
	}
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sv, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+sock))
		cancel()
		line := ""
		if err != nil {
			line = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		} else {
			c := sv.Certificates[0]
			line = fmt.Sprintf("svid %s %s %s %s", c.SerialNumber.Text(16), sv.ID, c.NotBefore.UTC().Format(time.RFC3339),
				base64.StdEncoding.EncodeToString(c.Raw))
		}
		if line != last {
			fmt.Println(line)
			last = line
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestRevokedProcessNotRevivedByRecreation: on the real SPIRE, the agent
// process of a task keeps running after the task is revoked (the kill
// switch takes its identity, not its process), and its manifest stays
// valid. When the task ID is created again with the same record — an
// operator re-creating it, or the parent delegating the same child ID
// again (task IDs are the caller's, and a retried create/delegation
// reuses its ID) — the new entry has another incarnation, which the
// revoked process's manifest does not name: that process never gets an
// SVID again, while a process launched with the new record does. Before
// incarnations (review 16) the revoked process got the new entry's SVIDs
// and the verifier allowed them.
func TestRevokedProcessNotRevivedByRecreation(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	work := t.TempDir()
	conn, err := grpc.NewClient("unix://"+st.RegistrarOperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	registrar := registrarv1.NewRegistrarClient(conn)
	create := func() {
		t.Helper()
		if _, err := agentid(t, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
			"--parent-id", st.NodeID, "--agent", "planner", "--task", "RC-1", "--model", "openai/gpt-4o",
			"--prompt-file", st.SamplePrompt, "--principal", "spiffe://example.org/user/alice", "--scope", "kb:read",
			"--deadline", time.Now().Add(time.Hour).UTC().Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339),
			"--output", "RC-1.json"); err != nil {
			t.Fatal(err)
		}
	}
	create()

	// The agent: launched once, before the revocation, and never again.
	cmd := exec.Command(filepath.Join(st.BinDir, "agentid"), "run", "--manifest-dir", st.ManifestDir,
		"--task-file", filepath.Join(work, "RC-1.json"), "--", os.Args[0], "-test.run=^TestWatchSVIDHelper$")
	cmd.Env = append(os.Environ(), "AGENTID_TEST_WATCH="+st.AgentSocket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	var mu sync.Mutex
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	waitLine := func(what string, after int, prefix string) (int, string) {
		t.Helper()
		var idx int
		var got string
		err := devstack.Poll(ctx, 30*time.Second, func() (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			for i := after; i < len(lines); i++ {
				if strings.HasPrefix(lines[i], prefix) {
					idx, got = i, lines[i]
					return true, nil
				}
			}
			return false, fmt.Errorf("%s: no %q line after %d: %q", what, prefix, after, lines)
		})
		if err != nil {
			t.Fatal(err)
		}
		return idx, got
	}
	i, first := waitLine("before the revocation", 0, "svid ")
	t.Logf("pid %d, incarnation 1: %.80s", cmd.Process.Pid, first)

	if _, err := registrar.RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: "spiffe://example.org/agent/planner/task/RC-1"}); err != nil {
		t.Fatal(err)
	}
	i, gone := waitLine("after the revocation", i+1, "err ")
	t.Logf("revoked: %s", gone)
	time.Sleep(3 * time.Second) // creation times are whole seconds
	create()
	recreated := time.Now()

	// Give the SPIRE agent time to sync the new entry, then look.
	time.Sleep(15 * time.Second)
	mu.Lock()
	var revived string
	for _, l := range lines[i+1:] {
		if strings.HasPrefix(l, "svid ") {
			revived = l
		}
	}
	mu.Unlock()
	if revived == "" {
		// The task itself is served: a process launched with the new
		// record gets its SVID, and the revoked one still gets none.
		dir, err := os.MkdirTemp(work, "svid")
		if err != nil {
			t.Fatal(err)
		}
		asTask(t, st, work, "RC-1.json", filepath.Join(st.SpireBin, "spire-agent"), "api", "fetch", "x509", "-socketPath", st.AgentSocket, "-write", dir)
		time.Sleep(2 * time.Second) // the watcher's next fetches
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines[i+1:] {
			if strings.HasPrefix(l, "svid ") {
				t.Errorf("the process of the revoked incarnation got an SVID once the new incarnation ran: %.100s", l)
			}
		}
		return
	}
	f := strings.Fields(revived)
	der, _ := base64.StdEncoding.DecodeString(f[4])
	body, _ := json.Marshal(map[string]string{"certificate": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	verdict, err := decide(newHTTPClient(), st.Verifier, credential{"revived", string(body)})
	t.Errorf("the process of the revoked incarnation (pid %d, launched before the revocation) got an SVID of the task re-created at %s: serial %s, not before %s; the verifier says %q (%v)",
		cmd.Process.Pid, recreated.UTC().Format(time.RFC3339), f[1], f[3], verdict, err)
}

// TestRegistrarRefusesRevokedIncarnation: on the real SPIRE, the
// X.509-SVID a task fetched before it was revoked, once the task ID is
// created again, is refused at the registrar's mTLS listener for
// DelegateTask, as every verifier refuses it ("revoked"): it was issued
// before the new entry was created
// (registrar/server.TestDelegateWithRevokedIncarnation at unit level).
// Before review 16 it delegated as the new incarnation (its principal,
// scopes, deadline).
func TestRegistrarRefusesRevokedIncarnation(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	work := t.TempDir()
	conn, err := grpc.NewClient("unix://"+st.RegistrarOperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	operator := registrarv1.NewRegistrarClient(conn)
	create := func(out string) {
		t.Helper()
		if _, err := agentid(t, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
			"--parent-id", st.NodeID, "--agent", "planner", "--task", "RC-2", "--model", "openai/gpt-4o",
			"--prompt-file", st.SamplePrompt, "--principal", "spiffe://example.org/user/alice", "--scope", "kb:read",
			"--ttl", "1h", "--output", out); err != nil {
			t.Fatal(err)
		}
	}
	create("RC-2-1.json")
	old := filepath.Join(work, "old")
	os.Mkdir(old, 0o700)
	asTask(t, st, work, "RC-2-1.json", filepath.Join(st.SpireBin, "spire-agent"), "api", "fetch", "x509", "-socketPath", st.AgentSocket, "-write", old)
	fetched := time.Now()
	oldCred := credential{"old X.509-SVID", ""}
	if b, err := os.ReadFile(filepath.Join(old, "svid.0.pem")); err == nil {
		body, _ := json.Marshal(map[string]string{"certificate": string(b)})
		oldCred.body = string(body)
	}
	if _, err := operator.RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: "spiffe://example.org/agent/planner/task/RC-2"}); err != nil {
		t.Fatal(err)
	}
	if d := 3*time.Second - time.Since(fetched); d > 0 {
		time.Sleep(d)
	}
	create("RC-2-2.json")
	time.Sleep(3 * time.Second) // the verifier's liveness view
	verdict, _ := decide(newHTTPClient(), st.Verifier, oldCred)
	t.Logf("verifier on the revoked incarnation's X.509-SVID: %q", verdict)

	sv, err := x509svid.Load(filepath.Join(old, "svid.0.pem"), filepath.Join(old, "svid.0.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), filepath.Join(old, "bundle.0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.MTLSClientConfig(sv, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(st.RegistrarID)))
	rc, err := grpc.NewClient(st.RegistrarAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := registrarv1.NewRegistrarClient(rc).DelegateTask(ctx, &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "RC-2-child",
		Model: "openai/gpt-4o", Prompt: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Scope: []string{"kb:read"}, TtlSeconds: 600})
	if err == nil {
		t.Errorf("the revoked incarnation's X.509-SVID (NotBefore %s; the verifier says %q) delegated from the re-created task: %s",
			sv.Certificates[0].NotBefore.UTC().Format(time.RFC3339), verdict, got.GetClaimsJson())
	} else if !strings.Contains(err.Error(), "revoked incarnation") {
		t.Errorf("refused for another reason: %v", err)
	} else {
		t.Logf("refused: %v", err)
	}
}
