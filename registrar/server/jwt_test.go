package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestDelegateWithJWTSVID(t *testing.T) {
	ca := testca.New(t, testTD, time.Now()) // jwtsvid validates against the wall clock
	r, _ := newRegistrar(t, loadPolicy(t))
	svc := New(r, WithDefaultParentID(testNode), WithJWTSVIDs(ca.JWTBundle(), testAudience))
	op, _ := serveOperator(t, svc)
	createPlanner(t, op, "P")
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	// The TLS client is a gateway, not a task: the bearer names the parent.
	gateway := agentClient(t, addr, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/gateway")), ca.X509Bundle())
	planner := spiffeid.RequireFromString(plannerP)
	other := testca.New(t, testTD, time.Now())

	delegate := func(c registrarv1.RegistrarClient, auth, task string) (*registrarv1.Task, error) {
		ctx := ctxT(t)
		if auth != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
		}
		return c.DelegateTask(ctx, &registrarv1.DelegateTaskRequest{Agent: "researcher", Task: task,
			Model: "openai/gpt-4o", Prompt: testPrompt, Scope: []string{"kb:read"}, TtlSeconds: 600})
	}
	got, err := delegate(gateway, "Bearer "+ca.CreateJWTSVID(planner, []string{testAudience}, nil), "R1")
	if err != nil || !strings.Contains(got.GetClaimsJson(), `"chain":["`+plannerP+`"]`) {
		t.Fatalf("good token over mTLS: %v %v", got, err)
	}
	// The operator socket takes a bearer too (operators may act for a task).
	if _, err := delegate(op, "bearer "+ca.CreateJWTSVID(planner, []string{testAudience}, nil), "R2"); err != nil {
		t.Errorf("good token on the operator socket: %v", err)
	}

	for _, tt := range []struct {
		name, auth string
		code       codes.Code
		msg        string
	}{
		{"wrong audience", "Bearer " + ca.CreateJWTSVID(planner, []string{"spiffe://example.org/verifier"}, nil),
			codes.Unauthenticated, `JWT-SVID: jwtsvid: expected audience in ["spiffe://example.org/registrar"] (audience=["spiffe://example.org/verifier"])`},
		{"other signer", "Bearer " + other.CreateJWTSVID(planner, []string{testAudience}, nil), codes.Unauthenticated, ""},
		{"not a JWT", "Bearer nope", codes.Unauthenticated, ""},
		{"not bearer", "Basic dXNlcjpwdw==", codes.Unauthenticated, `authorization is not "Bearer <JWT-SVID>"`},
		{"not a task", "Bearer " + ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/gateway"), []string{testAudience}, nil),
			codes.PermissionDenied, "caller spiffe://example.org/gateway is not an agent task: only tasks delegate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := delegate(gateway, tt.auth, "X")
			st, _ := status.FromError(err)
			if st.Code() != tt.code || tt.msg != "" && st.Message() != tt.msg {
				t.Errorf("got %v, want %s %q", err, tt.code, tt.msg)
			}
		})
	}

	// A registrar without jwt_audience refuses bearers rather than ignore them.
	plain := New(r)
	plainAddr := serveAgent(t, plain, ca, ca.X509Bundle())
	asPlanner := agentClient(t, plainAddr, ca.CreateX509SVID(planner), ca.X509Bundle())
	_, err = delegate(asPlanner, "Bearer "+ca.CreateJWTSVID(planner, []string{testAudience}, nil), "R3")
	wantStatus(t, err, codes.Unauthenticated, "JWT-SVID callers are not enabled on this registrar (jwt_audience)")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer a", "authorization", "Bearer b")
	_, err = asPlanner.DelegateTask(ctx, &registrarv1.DelegateTaskRequest{Agent: "researcher"})
	wantStatus(t, err, codes.Unauthenticated, "more than one authorization header")
}
