package verifier_test

// Open streams and upgraded connections are held to the peer's liveness
// and expiry for their whole life, not only at their start (issue 10,
// review 11 finding F1).

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

const plannerID = "spiffe://example.org/agent/planner/task/T-41"

// liveEnv is an attack environment whose task (and its delegator) the
// liveness view lists, with a decision log.
func liveEnv(t *testing.T) (*attackEnv, *verifier.LivenessView, time.Time, *recAudit) {
	t.Helper()
	e := newAttackEnv(t)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	wall := time.Now()
	if err := view.Update(wall.Add(-time.Minute), []string{taskID.String(), plannerID}); err != nil {
		t.Fatal(err)
	}
	e.v.Liveness = view.Check
	e.v.Policy = loadPolicy(t, "rule \"g\" {\n effect = \"allow\"\n action {\n grpc {\n methods = [\"/grpc.testing.TestService/*\"]\n }\n }\n}\n"+
		"rule \"h\" {\n effect = \"allow\"\n action {\n http {\n paths = [\"/kb/**\"]\n }\n }\n}\n")
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e.v.Audit = w
	return e, view, wall, &recAudit{w: w, path: path}
}

// duplex answers each message of a FullDuplexCall with "did <it> for
// <peer>": a command the service acts on for the stream's peer.
type duplex struct {
	testgrpc.UnimplementedTestServiceServer
}

func (duplex) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		in, err := s.Recv()
		if err != nil {
			return nil // a careless handler: the interceptor must still end the stream with the refusal
		}
		p, _ := verifier.PeerFromContext(s.Context())
		body := []byte("did " + string(in.GetPayload().GetBody()) + " for " + p.ID().String())
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
}

func (duplex) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// bufconnGRPC serves duplex behind e's interceptors on an in-memory
// listener and returns a client.
func bufconnGRPC(t *testing.T, v *verifier.Verifier) testgrpc.TestServiceClient {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.UnaryInterceptor(v.UnaryServerInterceptor()), grpc.StreamInterceptor(v.StreamServerInterceptor()))
	testgrpc.RegisterTestServiceServer(srv, duplex{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

func roundTrip(stream testgrpc.TestService_FullDuplexCallClient, cmd string) (string, error) {
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(cmd)}}); err != nil {
		_, err = stream.Recv() // the stream's status
		return "", err
	}
	r, err := stream.Recv()
	return string(r.GetPayload().GetBody()), err
}

// streamRefusals are the audit records of refusals by frontend with reason code.
func streamRefusals(t *testing.T, a *recAudit, frontend, code string) []audit.Record {
	t.Helper()
	a.load(t)
	var out []audit.Record
	for _, r := range a.recs {
		if r.Frontend == frontend && r.Decision == "deny" && strings.HasPrefix(r.Reason, "verifier: "+code+":") {
			out = append(out, r)
		}
	}
	return out
}

// A bidirectional stream opened while its task was live is ended, with
// the pipeline's reason, at its first message after the revocation of a
// task in its chain; the refusal is recorded like any other.
func TestGRPCStreamEndsOnRevocation(t *testing.T) {
	e, view, wall, rec := liveEnv(t)
	var observed atomic.Int32 // the metrics hook sees the refusal once too
	e.v.Observe = func(frontend string, r verifier.Result, _ time.Duration) {
		if frontend == verifier.FrontendGRPC && r.Code == verifier.ReasonRevoked {
			observed.Add(1)
		}
	}
	client := bufconnGRPC(t, e.v)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.jwt), 10*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(stream, "first"); err != nil || !strings.HasPrefix(got, "did first for ") {
		t.Fatalf("before revocation: %q %v", got, err)
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	_, newErr := client.EmptyCall(ctx, &testgrpc.Empty{})
	if status.Code(newErr) != codes.Unauthenticated {
		t.Fatalf("a new call after the revocation: %v", newErr)
	}
	got, err := roundTrip(stream, "after revocation")
	if err == nil {
		t.Fatalf("the revoked task's open stream is still served: %q", got)
	}
	st := status.Convert(err)
	if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "revoked") || st.Message() != status.Convert(newErr).Message() {
		t.Errorf("stream ended with %v %q; a new call gets %q", st.Code(), st.Message(), status.Convert(newErr).Message())
	}
	// Two refusals recorded: the new call's and the stream's (once).
	if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonRevoked)); n != 2 {
		t.Errorf("%d revoked refusals recorded, want 2 (the new call, the stream)", n)
	}
	if n := observed.Load(); n != 2 {
		t.Errorf("%d revoked refusals observed, want 2", n)
	}
}

// A stream idle in Recv when its task is revoked is ended by the
// verifier within its re-check interval: the client learns it without
// sending anything.
func TestGRPCIdleStreamEndsOnRevocation(t *testing.T) {
	e, view, wall, rec := liveEnv(t)
	client := bufconnGRPC(t, e.v)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.jwt), 20*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(stream, "first"); err != nil {
		t.Fatal(err)
	}
	if err := view.Apply(wall, nil, []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv() // the server handler is blocked in Recv; nothing is sent
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "revoked") {
		t.Fatalf("idle stream after revocation: %v", err)
	}
	if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonRevoked)); n != 1 {
		t.Errorf("%d revoked refusals recorded, want 1", n)
	}
}

// tlsGRPC serves duplex behind v's interceptors over SPIFFE mTLS on a
// real TCP listener and returns a client presenting clientSVID.
func tlsGRPC(t *testing.T, ca *testca.CA, v *verifier.Verifier, clientSVID *x509svid.SVID) testgrpc.TestServiceClient {
	t.Helper()
	serverID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(verifier.ServerTLSConfig(ca.CreateX509SVID(serverID), ca.X509Bundle()))),
		grpc.UnaryInterceptor(v.UnaryServerInterceptor()), grpc.StreamInterceptor(v.StreamServerInterceptor()))
	testgrpc.RegisterTestServiceServer(srv, duplex{})
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		verifier.ClientTLSConfig(clientSVID, ca.X509Bundle(), tlsconfig.AuthorizeID(serverID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// shortSVID is a task X.509-SVID of e's CA that expires in about two
// to three seconds (certificate times have a resolution of one second).
func shortSVID(t *testing.T, e *attackEnv) *x509svid.SVID {
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	return e.ca.CreateX509SVID(taskID, ext(t, c), testca.WithLifetime(time.Now().Add(-time.Minute), time.Now().Add(3*time.Second)))
}

// A stream over mTLS is ended when the client's certificate expires,
// although the TLS session it was opened on stays up: the verifier ends
// it (expired, recorded) without the client sending anything.
func TestGRPCStreamEndsAtExpiry(t *testing.T) {
	e, _, _, rec := liveEnv(t)
	s := shortSVID(t, e)
	client := tlsGRPC(t, e.ca, e.v, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(stream, "first"); err != nil {
		t.Fatalf("before expiry: %q %v", got, err)
	}
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), verifier.ReasonExpired) {
		t.Fatalf("stream past the certificate's expiry: %v", err)
	}
	if now := time.Now(); now.Before(s.Certificates[0].NotAfter) {
		t.Errorf("ended at %s, before the certificate's NotAfter %s", now, s.Certificates[0].NotAfter)
	}
	if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonExpired)); n != 1 {
		t.Errorf("%d expired refusals recorded, want 1", n)
	}
}

// waiter is a server-streaming service that sends one message and then
// waits for its context, reporting the context's cause.
type waiter struct {
	testgrpc.UnimplementedTestServiceServer
	cause chan error
}

func (w waiter) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, s testgrpc.TestService_StreamingOutputCallServer) error {
	if err := s.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-s.Context().Done()
	w.cause <- context.Cause(s.Context())
	return nil
}

// A handler that watches its context (and does not Recv) learns of the
// revocation from it: the context is cancelled with the refusal as its
// cause, and the stream ends with the refusal.
func TestGRPCStreamContextCancelledOnRevocation(t *testing.T) {
	e, view, wall, _ := liveEnv(t)
	l := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.StreamInterceptor(e.v.StreamServerInterceptor()))
	w := waiter{cause: make(chan error, 1)}
	testgrpc.RegisterTestServiceServer(srv, w)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.jwt), 20*time.Second)
	defer cancel()
	stream, err := testgrpc.NewTestServiceClient(conn).StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := view.Apply(wall, nil, []string{taskID.String()}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "revoked") {
		t.Fatalf("stream after revocation: %v", err)
	}
	if cause := <-w.cause; status.Code(cause) != codes.Unauthenticated || !strings.Contains(status.Convert(cause).Message(), "revoked") {
		t.Errorf("the handler's context cause: %v", cause)
	}
}
