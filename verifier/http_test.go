package verifier_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// scopePolicy allows http GET under /kb/ to peers holding kb:read, and the
// gRPC health check to any task; everything else is denied.
var scopePolicy = verifier.PolicyFunc(func(in *policies.Input) policies.Decision {
	switch {
	case in.Peer.Claims == nil:
		return policies.Decision{Reason: "not an agent task"}
	case in.Action.Kind == "http" && strings.HasPrefix(in.Action.Path, "/kb/") && in.Peer.Claims.HasScope("kb:read"):
		return policies.Decision{Allow: true, Rules: []policies.RuleRef{{Name: "read-kb", File: "kb.hcl", Line: 1}}, Reason: "kb:read"}
	case in.Action.Kind == "grpc" && in.Action.Path == "/grpc.health.v1.Health/Check":
		return policies.Decision{Allow: true, Rules: []policies.RuleRef{{Name: "health", File: "kb.hcl", Line: 9}}}
	}
	return policies.Decision{Reason: "no rule allows " + in.Action.Method + " " + in.Action.Path}
})

type stack struct {
	ca  *testca.CA
	v   *verifier.Verifier
	url string
	log string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	wall := time.Now()
	ca := testca.New(t, td, wall)
	logPath := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(logPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}),
		Policy: scopePolicy,
		Audit:  w,
	}
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := verifier.PeerFromContext(r.Context())
		d, _ := verifier.DecisionFromContext(r.Context())
		io.WriteString(w, p.Agent()+" "+strings.Join(d.RuleStrings(), ","))
	}))
	// Not httptest's StartTLS: it installs its own certificate, which
	// would shadow the SVID for clients that send no SNI.
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/kb")), ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &stack{ca: ca, v: v, url: "https://" + l.Addr().String(), log: logPath}
}

func (s *stack) client(t *testing.T, ca *testca.CA, id spiffeid.ID, opts ...testca.SVIDOption) *http.Client {
	cfg := verifier.ClientTLSConfig(ca.CreateX509SVID(id, opts...), s.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/kb")))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func TestMiddlewareOverMTLS(t *testing.T) {
	s := newStack(t)
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	client := s.client(t, s.ca, taskID, ext(t, c))

	code, body, _ := get(t, client, s.url+"/kb/doc-1")
	if code != 200 || body != "researcher read-kb (kb.hcl:1)" {
		t.Fatalf("allowed request: %d %q", code, body)
	}
	code, body, hdr := get(t, client, s.url+"/tickets/new")
	if code != 403 || !strings.Contains(body, "no rule allows GET /tickets/new") || hdr.Get(verifier.HeaderDenyReason) == "" {
		t.Fatalf("denied request: %d %q %v", code, body, hdr)
	}

	// A plain workload SVID (no claims) is authenticated but not a task.
	code, body, _ = get(t, s.client(t, s.ca, plainID), s.url+"/kb/doc-1")
	if code != 403 || !strings.Contains(body, "not an agent task") {
		t.Fatalf("plain SVID: %d %q", code, body)
	}

	// A forged SVID from another CA never completes the handshake.
	forger := testca.New(t, td, time.Now())
	if code, body, _ := get(t, s.client(t, forger, taskID, ext(t, c)), s.url+"/kb/doc-1"); code != 0 {
		t.Fatalf("forged SVID got through: %d %q", code, body)
	}

	// Every decision is in the audit log, and the log verifies.
	if err := s.v.Audit.Flush(); err != nil {
		t.Fatal(err)
	}
	sum, err := audit.VerifyChain([]string{s.log})
	if err != nil || sum.Records != 3 {
		t.Fatalf("audit: %+v %v", sum, err)
	}
}

func TestMiddlewareJWTAndNoCredential(t *testing.T) {
	s := newStack(t)
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tok := s.ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims())

	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/kb/doc-1", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	s.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })).ServeHTTP(rec, r)
	if rec.Code != 204 {
		t.Fatalf("JWT: %d %s", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	s.v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/kb/doc-1", nil))
	if rec.Code != 401 || !strings.Contains(rec.Body.String(), "no_credential") {
		t.Fatalf("no credential: %d %s", rec.Code, rec.Body)
	}

	rec = httptest.NewRecorder()
	r = httptest.NewRequest("GET", "/kb/doc-1", nil)
	r.Header.Set("Authorization", "Bearer "+strings.Repeat("a", verifier.MaxBearerLen+1))
	s.v.Middleware(http.NotFoundHandler()).ServeHTTP(rec, r)
	if rec.Code != 401 {
		t.Fatalf("oversized bearer: %d %s", rec.Code, rec.Body)
	}
}

func TestIdentityHeadersReplaceForgedOnes(t *testing.T) {
	c := claims()
	pp := verifier.NewPeer(taskID, &c)
	p := &pp
	h := http.Header{}
	h.Set("X-Agentid-Agent", "admin")
	h.Set("X-Agentid-Forged", "1")
	verifier.SetIdentityHeaders(h, p, verifier.Decision{Decision: policies.Decision{Allow: true, Rules: []policies.RuleRef{{Name: "r", File: "a.hcl", Line: 1}}}})
	if h.Get(verifier.HeaderAgent) != "researcher" || h.Get("X-Agentid-Forged") != "" || h.Get(verifier.HeaderRule) != "r (a.hcl:1)" {
		t.Fatalf("headers %v", h)
	}
}

func TestGRPCInterceptors(t *testing.T) {
	wall := time.Now()
	ca := testca.New(t, td, wall)
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: scopePolicy}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(verifier.ServerTLSConfig(ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/kb")), ca.X509Bundle()))),
		grpc.UnaryInterceptor(v.UnaryServerInterceptor()), grpc.StreamInterceptor(v.StreamServerInterceptor()))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)

	dial := func(id spiffeid.ID, opts ...testca.SVIDOption) healthpb.HealthClient {
		cfg := verifier.ClientTLSConfig(ca.CreateX509SVID(id, opts...), ca.X509Bundle(), tlsconfig.AuthorizeAny())
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return healthpb.NewHealthClient(conn)
	}
	c := claims()
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	task := dial(taskID, ext(t, c))
	if _, err := task.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("allowed unary call: %v", err)
	}
	stream, err := task.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no rule allows") {
		t.Fatalf("denied stream: %v", err)
	}
	if _, err := dial(plainID).Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("plain SVID: %v", err)
	}
}
