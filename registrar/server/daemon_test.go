package server

import (
	"context"
	"errors"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const daemonPolicy = `agent "planner" {
  models     = ["openai/*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
}

agent "researcher" {
  models     = ["openai/*"]
  prompts    = ["*"]
  scopes     = ["kb:read"]
  principals = ["*"]
  delegators = ["planner"]
}
`

// startDaemon runs a daemon on a fake SPIRE server (unless cfg names a
// server API socket) with the policy above (in a file the test may rewrite)
// and returns it, its operator client, the policy path and its log.
func startDaemon(t *testing.T, cfg *Config, src *Sources) (*Daemon, registrarv1.RegistrarClient, string, *syncBuffer) {
	t.Helper()
	if cfg.ServerAPISocket == "" {
		cfg.ServerAPISocket = fakeentry.Start(t).SocketPath
	}
	dir := shortDir(t)
	cfg.TrustDomain, cfg.ParentID = testTD, testNode
	cfg.IssuancePolicy = filepath.Join(dir, "issuance.hcl")
	cfg.OperatorSocket, cfg.OperatorSocketMode = filepath.Join(dir, "op.sock"), DefaultOperatorSocketMode
	cfg.SelectorType, cfg.MaxX509SVIDTTL, cfg.MaxJWTSVIDTTL = "agentid", time.Hour, 5*time.Minute
	writePolicy(t, cfg.IssuancePolicy, daemonPolicy)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	d, err := NewDaemon(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), src)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if _, err := os.Lstat(cfg.OperatorSocket); !os.IsNotExist(err) {
			t.Errorf("operator socket left behind: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+cfg.OperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return d, registrarv1.NewRegistrarClient(conn), cfg.IssuancePolicy, &logs
}

func writePolicy(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonReload(t *testing.T) {
	d, op, policy, logs := startDaemon(t, &Config{}, nil)
	if a := d.MetricsAddr(); a != nil {
		t.Errorf("metrics served at %s without a metrics block", a)
	}
	create := func(task, scope string) error {
		_, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: task, Model: "openai/gpt-4o",
			Prompt: testPrompt, Scope: []string{scope}, Principal: alice, TtlSeconds: 600})
		return err
	}
	if err := create("T1", "kb:write"); err != nil {
		t.Fatal(err)
	}

	// A broken file: the reload fails, is logged, and the old policy stays.
	writePolicy(t, policy, strings.Replace(daemonPolicy, "scopes ", "scopez ", 1))
	err := d.Reload()
	var pe *registrar.ParseError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), policy+`:4:3: Unsupported argument; An argument named "scopez" is not expected here.`) {
		t.Errorf("reload of a broken policy: %v", err)
	}
	if !strings.Contains(logs.String(), "issuance policy reload failed; keeping the last good policy") {
		t.Errorf("log:\n%s", logs)
	}
	if err := create("T2", "kb:write"); err != nil {
		t.Errorf("old policy not in force: %v", err)
	}

	// A good file replaces it.
	writePolicy(t, policy, strings.Replace(daemonPolicy, `"kb:read", "kb:write"`, `"kb:read"`, 1))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	err = create("T3", "kb:write")
	if status.Code(err) != codes.PermissionDenied || ReasonOf(err) != registrar.ReasonScopeNotAllowed {
		t.Errorf("new policy not in force: %v", err)
	}
	if !strings.Contains(logs.String(), "issuance policy reloaded") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestDaemonAgentListener(t *testing.T) {
	ca := testca.New(t, testTD, time.Now())
	src := &Sources{X509SVID: ca.CreateX509SVID(spiffeid.RequireFromString(registrarID)), X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle()}
	d, op, _, logs := startDaemon(t, &Config{Listen: "127.0.0.1:0", JWTAudience: testAudience, MetricsListen: "127.0.0.1:0"}, src)
	// Root tasks take the configured parent_id.
	if p := createPlanner(t, op, "P"); p.ParentId != testNode {
		t.Errorf("parent ID %q", p.ParentId)
	}
	planner := agentClient(t, d.AgentAddr().String(), ca.CreateX509SVID(spiffeid.RequireFromString(plannerP)), ca.X509Bundle())
	got, err := planner.DelegateTask(ctxT(t), &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "R",
		Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 1800})
	if err != nil || got.SpiffeId != "spiffe://example.org/agent/researcher/task/R" {
		t.Fatalf("delegate: %v %v", got, err)
	}
	_, err = planner.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP})
	wantStatus(t, err, codes.PermissionDenied, "operators only: use the local socket")
	if !strings.Contains(logs.String(), `msg="task created" method=DelegateTask caller="`+plannerP+` (x509)" task=spiffe://example.org/agent/researcher/task/R`) {
		t.Errorf("log:\n%s", logs)
	}
	// The mTLS listener's calls are counted, refused operator RPCs included.
	wantMetrics(t, d, `agentid_registrar_requests_total{code="OK",method="DelegateTask"} 1`,
		`agentid_registrar_requests_total{code="PermissionDenied",method="RevokeTask"} 1`,
		`agentid_registrar_tasks_created_total 2`)
}

// TestDaemonMetrics: with a metrics block the daemon serves /healthz,
// /readyz and /metrics, and the metrics count what the task API did.
func TestDaemonMetrics(t *testing.T) {
	fe := fakeentry.Start(t)
	d, op, policy, _ := startDaemon(t, &Config{ServerAPISocket: fe.SocketPath, MetricsListen: "127.0.0.1:0"}, nil)
	wantGet(t, d, "/healthz", http.StatusOK, "ok\n")
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n") // probed: no call yet
	wantMetrics(t, d, `agentid_registrar_policy_last_reload_ok 1`, `agentid_registrar_tasks_created_total 0`,
		`agentid_registrar_refusals_total{reason="scope_escalation"} 0`)

	createPlanner(t, op, "P")
	_, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R1", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:write"}, ParentTask: plannerP, TtlSeconds: 600})
	if ReasonOf(err) != registrar.ReasonScopeEscalation {
		t.Fatalf("escalating child: %v", err)
	}
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "researcher", Task: "R2", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, ParentTask: plannerP, TtlSeconds: 600}); err != nil {
		t.Fatal(err)
	}
	if got, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: plannerP}); err != nil || len(got.Removed) != 2 {
		t.Fatalf("revoke: %v %v", got, err)
	}
	writePolicy(t, policy, "agent {")
	if d.Reload() == nil {
		t.Fatal("broken policy reloaded")
	}
	wantMetrics(t, d,
		`agentid_registrar_tasks_created_total 2`,
		`agentid_registrar_tasks_revoked_total 2`,
		`agentid_registrar_refusals_total{reason="scope_escalation"} 1`,
		`agentid_registrar_refusals_total{reason="depth_exceeded"} 0`,
		`agentid_registrar_requests_total{code="OK",method="CreateTask"} 2`,
		`agentid_registrar_requests_total{code="PermissionDenied",method="CreateTask"} 1`,
		`agentid_registrar_requests_total{code="OK",method="RevokeTask"} 1`,
		`agentid_registrar_request_duration_seconds_count{method="CreateTask"} 3`,
		`agentid_registrar_policy_reloads_total{result="error"} 1`,
		`agentid_registrar_policy_reloads_total{result="ok"} 0`,
		`agentid_registrar_policy_last_reload_ok 0`)
	// The last good policy is in force: still ready.
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n")

	// A call SPIRE does not answer makes /readyz probe, which fails until
	// SPIRE answers again.
	fe.Fail(status.Error(codes.Unavailable, "datastore down"))
	if _, err := op.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: plannerP}); status.Code(err) != codes.Unavailable {
		t.Fatalf("get with SPIRE down: %v", err)
	}
	wantGet(t, d, "/readyz", http.StatusServiceUnavailable,
		"not ready: SPIRE Entry API at "+fe.SocketPath+": rpc error: code = Unavailable desc = datastore down\n")
	fe.Fail(nil)
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n")

	// SPIRE answering, but failing (its datastore down: Internal), is not
	// ready either.
	fe.Fail(status.Error(codes.Internal, "datastore: connection refused"))
	if _, err := op.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: plannerP}); status.Code(err) == codes.OK {
		t.Fatal("get with SPIRE failing succeeded")
	}
	wantGet(t, d, "/readyz", http.StatusServiceUnavailable,
		"not ready: SPIRE Entry API at "+fe.SocketPath+": rpc error: code = Internal desc = datastore: connection refused\n")
	fe.Fail(nil)
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n")
}

// TestDaemonNotReadyWithoutSPIRE: nobody serves the server API socket;
// the daemon is alive but not ready.
func TestDaemonNotReadyWithoutSPIRE(t *testing.T) {
	sock := filepath.Join(shortDir(t), "none.sock")
	d, _, _, _ := startDaemon(t, &Config{ServerAPISocket: sock, MetricsListen: "127.0.0.1:0"}, nil)
	wantGet(t, d, "/healthz", http.StatusOK, "ok\n")
	code, body := get(t, d, "/readyz")
	if want := "not ready: SPIRE Entry API at " + sock + ": rpc error: code = Unavailable"; code != http.StatusServiceUnavailable || !strings.HasPrefix(body, want) {
		t.Errorf("/readyz: %d %q\nwant %d %q…", code, body, http.StatusServiceUnavailable, want)
	}
}

// get fetches path from the daemon's metrics listener.
func get(t *testing.T, d *Daemon, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+d.MetricsAddr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func wantGet(t *testing.T, d *Daemon, path string, code int, body string) {
	t.Helper()
	if gotCode, got := get(t, d, path); gotCode != code || got != body {
		t.Errorf("%s: %d %q\nwant %d %q", path, gotCode, got, code, body)
	}
}

// wantMetrics checks that /metrics has each of lines.
func wantMetrics(t *testing.T, d *Daemon, lines ...string) {
	t.Helper()
	code, body := get(t, d, "/metrics")
	have := strings.Split(body, "\n")
	for _, l := range lines {
		if !slices.Contains(have, l) {
			t.Errorf("/metrics (%d) has no line %q", code, l)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestDaemonNotReadyWhileWritesFail: SPIRE answering reads while its
// datastore cannot take writes (a full disk: every created entry comes back
// Internal) is not ready: /readyz fails from the first failed write, and
// while it does, it probes with a write of its own (an entry no workload
// can match, deleted at once) until one succeeds.
func TestDaemonNotReadyWhileWritesFail(t *testing.T) {
	fe := fakeentry.Start(t)
	d, op, _, _ := startDaemon(t, &Config{ServerAPISocket: fe.SocketPath, MetricsListen: "127.0.0.1:0"}, nil)
	createPlanner(t, op, "P")
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n")

	full := &types.Status{Code: int32(codes.Internal), Message: "failed to create entry: datastore-sql: database or disk is full"}
	fe.FailWrites(full)
	if _, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: "Q", Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: []string{"kb:read"}, Principal: alice, TtlSeconds: 3600}); status.Code(err) != codes.Internal {
		t.Fatalf("create with the datastore full: %v", err)
	}
	// Reads still work: GetTask answers, and must not make it ready.
	if _, err := op.GetTask(ctxT(t), &registrarv1.GetTaskRequest{SpiffeId: plannerP}); err != nil {
		t.Fatal(err)
	}
	want := "not ready: SPIRE cannot write entries: rpc error: code = Internal desc = failed to create entry: datastore-sql: database or disk is full\n"
	wantGet(t, d, "/readyz", http.StatusServiceUnavailable, want)
	wantGet(t, d, "/readyz", http.StatusServiceUnavailable, want) // the probe write fails too

	fe.FailWrites(nil)
	wantGet(t, d, "/readyz", http.StatusOK, "ready\n") // the probe write succeeds
	if n := len(fe.Entries()); n != 1 {
		t.Errorf("%d entries after the probes, want the planner's only", n)
	}
}
