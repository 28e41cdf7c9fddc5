package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
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

// startDaemon runs a daemon on a fake SPIRE server with the policy above
// (in a file the test may rewrite) and returns it, its operator client, the
// policy path and its log.
func startDaemon(t *testing.T, cfg *Config, src *Sources) (*Daemon, registrarv1.RegistrarClient, string, *syncBuffer) {
	t.Helper()
	fe := fakeentry.Start(t)
	dir := shortDir(t)
	cfg.TrustDomain, cfg.ServerAPISocket, cfg.ParentID = testTD, fe.SocketPath, testNode
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
	d, op, _, logs := startDaemon(t, &Config{Listen: "127.0.0.1:0", JWTAudience: testAudience}, src)
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
}
