package server

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	testPolicy   = "../testdata/policy.hcl"
	testPrompt   = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	testNode     = "spiffe://example.org/spire/agent/join_token/node1"
	alice        = "spiffe://example.org/user/alice"
	plannerP     = "spiffe://example.org/agent/planner/task/P"
	registrarID  = "spiffe://example.org/registrar"
	testAudience = "spiffe://example.org/registrar"
)

var (
	testTD  = spiffeid.RequireTrustDomainFromString("example.org")
	testNow = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
)

// newRegistrar serves a fake Entry API and returns a registrar on it with
// the given policy source and the pinned clock.
func newRegistrar(t testing.TB, policy registrar.PolicySource) (*registrar.Registrar, *fakeentry.Server) {
	t.Helper()
	fe := fakeentry.Start(t)
	conn, err := grpc.NewClient(fe.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registrar.New(conn, testTD, policy, registrar.WithClock(func() time.Time { return testNow })), fe
}

func loadPolicy(t testing.TB) *registrar.Policy {
	t.Helper()
	p, err := registrar.LoadPolicy(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// shortDir is a temporary directory with a path short enough for a unix
// socket (t.TempDir's can exceed the 108-byte limit).
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveOperator serves svc's operator server on a 0600 socket and returns a
// client and the socket path.
func serveOperator(t *testing.T, svc *Service) (registrarv1.RegistrarClient, string) {
	t.Helper()
	path := filepath.Join(shortDir(t), "op.sock")
	l, err := ListenUnix(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	g := svc.OperatorServer()
	go g.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registrarv1.NewRegistrarClient(conn), path
}

// serveAgent serves svc's mTLS server on 127.0.0.1 with an SVID of ca,
// verifying clients with bundles.
func serveAgent(t testing.TB, svc *Service, ca *testca.CA, bundles x509bundle.Source) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := svc.AgentServer(ca.CreateX509SVID(spiffeid.RequireFromString(registrarID)), bundles)
	go g.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)
	return l.Addr().String()
}

// agentClient dials addr over mTLS as caller, trusting bundle and
// authorizing the registrar's ID.
func agentClient(t testing.TB, addr string, caller *x509svid.SVID, bundle *x509bundle.Bundle) registrarv1.RegistrarClient {
	t.Helper()
	tc := tlsconfig.MTLSClientConfig(caller, bundle, tlsconfig.AuthorizeID(spiffeid.RequireFromString(registrarID)))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registrarv1.NewRegistrarClient(conn)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createPlanner creates the root task P (scope kb:read, principal alice,
// deadline testNow+3h) through the operator API.
func createPlanner(t *testing.T, op registrarv1.RegistrarClient, task string, scope ...string) *registrarv1.Task {
	t.Helper()
	if len(scope) == 0 {
		scope = []string{"kb:read"}
	}
	got, err := op.CreateTask(ctxT(t), &registrarv1.CreateTaskRequest{Agent: "planner", Task: task, Model: "openai/gpt-4o",
		Prompt: testPrompt, Scope: scope, Principal: alice, TtlSeconds: 3 * 3600})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
