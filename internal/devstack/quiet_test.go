package devstack_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/registrar/server"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// jwtPayload decodes a JWT's payload.
func jwtPayload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Shortened for the test: the registrars' recreate_quiet_period, and the
// JWT-SVID TTL it covers (docs/registrar.md: at least the TTL plus SPIRE's
// entry cache reload and agent sync, 1 s each in the dev stack).
const (
	testQuiet  = 20 * time.Second
	testJWTTTL = 10 * time.Second
)

// TestRecreateQuietPeriod (review 19), on the real SPIRE 1.13.3: a task
// "restarted" by revoke + create of the same ID at once. Before, SPIRE
// still authorized the deleted entry for about a second while the composer
// read the new one: the revoked process minted a JWT-SVID for a new
// audience carrying the new incarnation's claims (principal carol), which
// the verifier allowed; the new incarnation's process was served its
// predecessor's JWT-SVID from the agent's cache (the verifier allowed it);
// and an X.509-SVID the old process fetched just before, or a JWT-SVID it
// minted on demand, delegated from the new incarnation. Now the re-create
// is refused (recently_revoked) within the quiet period; once it has
// passed, the new incarnation gets its own claims and the revoked process
// nothing, and the old credentials do not delegate.
func TestRecreateQuietPeriod(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t},
		RecreateQuietPeriod: testQuiet, MaxJWTSVIDTTL: testJWTTTL})
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
	agentBin := filepath.Join(st.SpireBin, "spire-agent")
	const taskID = "spiffe://example.org/agent/planner/task/RE-1"
	create := func(principal, scope string) (*registrarv1.Task, error) {
		return operator.CreateTask(ctx, &registrarv1.CreateTaskRequest{Agent: "planner", Task: "RE-1", Model: "openai/gpt-4o",
			Prompt: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Scope: []string{scope},
			Principal: principal, TtlSeconds: 3600})
	}
	record := func(out string) { // the task record for `agentid run`, read from the entry
		t.Helper()
		if _, err := agentid(t, st, work, "task", "show", "--server-socket", st.ServerSocket, "--agent", "planner", "--task", "RE-1", "--output", out); err != nil {
			t.Fatal(err)
		}
	}
	// fetchJWT runs one JWT-SVID fetch as the task of taskFile, no retry.
	fetchJWT := func(taskFile, audience string) (string, error) {
		out, err := agentid(t, st, work, "run", "--manifest-dir", st.ManifestDir, "--task-file", taskFile, "--",
			agentBin, "api", "fetch", "jwt", "-audience", audience, "-socketPath", st.AgentSocket)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(strings.Split(out, "\n")[1]), nil
	}
	claimsOf := func(tok string) string {
		ag, _ := json.Marshal(jwtPayload(t, tok)["agentid"])
		return string(ag)
	}
	verdict := func(tok string) string {
		jb, _ := json.Marshal(map[string]string{"jwt": tok})
		v, err := decide(newHTTPClient(), st.Verifier, credential{"jwt", string(jb)})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// Incarnation 1 (alice, kb:read): its process caches a JWT-SVID for
	// the default audience at the agent, keeps its X.509-SVID, and mints
	// a JWT-SVID for the registrar just before the revoke.
	if _, err := create("spiffe://example.org/user/alice", "kb:read"); err != nil {
		t.Fatal(err)
	}
	record("RE-1-a.json")
	asTask(t, st, work, "RE-1-a.json", agentBin, "api", "fetch", "jwt", "-audience", devstack.DefaultJWTAudience, "-socketPath", st.AgentSocket)
	dir := filepath.Join(work, "old")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	asTask(t, st, work, "RE-1-a.json", agentBin, "api", "fetch", "x509", "-socketPath", st.AgentSocket, "-write", dir)
	fresh, err := fetchJWT("RE-1-a.json", st.RegistrarID+",nonce-"+time.Now().Format("150405.000"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := operator.RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: taskID}); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	// Restarted at once: refused, naming when the ID may be created again.
	_, err = create("spiffe://example.org/user/carol", "kb:read")
	if status.Code(err) != codes.FailedPrecondition || server.ReasonOf(err) != registrar.ReasonRecentlyRevoked ||
		!strings.Contains(err.Error(), "it may be created again from") || !strings.Contains(err.Error(), "use a fresh task ID") {
		t.Errorf("task ID created again right after its revocation: %v, want recently_revoked", err)
	}
	// The revoked process asks for JWT-SVIDs for new audiences (a new
	// mint each) while SPIRE's caches catch up: none may carry carol's
	// claims or be allowed.
	for i := 0; i < 10; i++ {
		tok, err := fetchJWT("RE-1-a.json", devstack.DefaultJWTAudience+",nonce-"+time.Now().Format("150405.000"))
		if err != nil {
			t.Logf("%.1fs after the revoke the revoked incarnation gets no JWT-SVID", time.Since(revoked).Seconds())
			break
		}
		c := claimsOf(tok)
		time.Sleep(2 * time.Second) // the verifier's liveness view
		if v := verdict(tok); strings.Contains(c, "carol") || v == "allow" {
			t.Errorf("%.1fs after the revoke the revoked incarnation minted a JWT-SVID with claims %s; verifier %q", time.Since(revoked).Seconds(), c, v)
		}
	}
	// Its credentials delegate from nothing.
	old := oldIncarnationClient(t, st, dir)
	delegate := &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: "RE-1-child", Model: "openai/gpt-4o",
		Prompt: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Scope: []string{"kb:read"}, TtlSeconds: 600}
	if d, err := old.DelegateTask(ctx, delegate); err == nil {
		t.Errorf("the revoked incarnation's X.509-SVID delegated within the quiet period: %s", d.GetClaimsJson())
	}
	if d, err := old.DelegateTask(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fresh), delegate); err == nil {
		t.Errorf("a JWT-SVID the revoked incarnation minted just before its revoke delegated within the quiet period: %s", d.GetClaimsJson())
	}

	// After the quiet period: incarnation 2 (carol, kb:write).
	time.Sleep(time.Until(revoked.Add(testQuiet + time.Second)))
	if _, err := create("spiffe://example.org/user/carol", "kb:write"); err != nil {
		t.Fatalf("task ID created again after the quiet period: %v", err)
	}
	recreated := time.Now().Unix()
	record("RE-1-b.json")
	// Its process gets a JWT-SVID of its own for the audience its
	// predecessor's token was cached for, with its own claims.
	out := asTask(t, st, work, "RE-1-b.json", agentBin, "api", "fetch", "jwt", "-audience", devstack.DefaultJWTAudience, "-socketPath", st.AgentSocket)
	tok := strings.TrimSpace(strings.Split(out, "\n")[1])
	iat, _ := jwtPayload(t, tok)["iat"].(float64)
	if c := claimsOf(tok); int64(iat) < recreated-2 || !strings.Contains(c, "carol") || !strings.Contains(c, "kb:write") {
		t.Errorf("the new incarnation (carol, kb:write, created at %d) got a JWT-SVID issued at %d with claims %s", recreated, int64(iat), c)
	}
	time.Sleep(2 * time.Second) // the verifier's liveness view
	if v := verdict(tok); v != "allow" {
		t.Errorf("the new incarnation's own JWT-SVID: verifier %q, want allow", v)
	}
	// The revoked process gets nothing; its credentials do not delegate.
	if tok, err := fetchJWT("RE-1-a.json", devstack.DefaultJWTAudience+",nonce-"+time.Now().Format("150405.000")); err == nil {
		t.Errorf("the revoked incarnation's process got a JWT-SVID after the re-create: claims %s", claimsOf(tok))
	}
	if d, err := old.DelegateTask(ctx, delegate); err == nil {
		t.Errorf("the revoked incarnation's X.509-SVID delegated from the new incarnation: %s", d.GetClaimsJson())
	} else {
		t.Logf("old X.509-SVID: %v", err)
	}
	if d, err := old.DelegateTask(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+fresh), delegate); err == nil {
		t.Errorf("a JWT-SVID the revoked incarnation minted just before its revoke delegated from the new incarnation: %s", d.GetClaimsJson())
	}

	// Revoked with the CLI (a registrar of its own): the daemon, which
	// lists SPIRE for its verifiers every 500 ms, saw the entry go.
	if _, err := agentid(t, st, work, "task", "revoke", "--server-socket", st.ServerSocket, taskID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	_, err = create("spiffe://example.org/user/alice", "kb:read")
	if server.ReasonOf(err) != registrar.ReasonRecentlyRevoked || !strings.Contains(err.Error(), "revoked through another registrar or deleted in SPIRE") {
		t.Errorf("task ID created again through the daemon 2 s after a revoke with the CLI: %v, want recently_revoked", err)
	}
}

// oldIncarnationClient is a registrar client authenticated with the
// X.509-SVID written to dir.
func oldIncarnationClient(t *testing.T, st *devstack.Stack, dir string) registrarv1.RegistrarClient {
	t.Helper()
	sv, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), filepath.Join(dir, "bundle.0.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := tlsconfig.MTLSClientConfig(sv, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(st.RegistrarID)))
	rc, err := grpc.NewClient(st.RegistrarAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return registrarv1.NewRegistrarClient(rc)
}
