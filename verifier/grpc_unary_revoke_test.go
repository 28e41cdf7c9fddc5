package verifier_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/agentid/agentid/verifier"
)

// slowUnary answers UnaryCall when told (careless: it does not watch its
// context) or, when watch is set, gives up once its context ends.
type slowUnary struct {
	testgrpc.UnimplementedTestServiceServer
	started chan struct{}
	answer  chan struct{}
	watch   bool
}

func (s slowUnary) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.started <- struct{}{}
	if s.watch {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	<-s.answer
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: []byte("the result")}}, nil
}

// A unary call in progress when its task is revoked: its result is not
// given to the revoked task (the answer is the refusal a new call gets),
// and a handler that watches its context is cancelled within the re-check
// interval. Before, a long unary call (a report, a search) ran to its end
// and its result reached the revoked agent.
func TestGRPCUnaryCallEndsOnRevocation(t *testing.T) {
	for _, watch := range []bool{false, true} {
		t.Run(map[bool]string{false: "careless", true: "watching"}[watch], func(t *testing.T) {
			e, view, wall, rec := liveEnv(t)
			svc := slowUnary{started: make(chan struct{}, 1), answer: make(chan struct{}), watch: watch}
			l := bufconn.Listen(1 << 20)
			srv := grpc.NewServer(grpc.UnaryInterceptor(e.v.UnaryServerInterceptor()))
			testgrpc.RegisterTestServiceServer(srv, svc)
			go srv.Serve(l)
			t.Cleanup(srv.Stop)
			conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
				grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			client := testgrpc.NewTestServiceClient(conn)
			ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.jwt), 20*time.Second)
			defer cancel()
			type result struct {
				resp *testgrpc.SimpleResponse
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				done <- result{resp, err}
			}()
			<-svc.started
			if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
				t.Fatal(err)
			}
			if !watch {
				close(svc.answer)
			}
			var r result
			select {
			case r = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("the call neither answered nor ended 15 s after the revocation")
			}
			if r.err == nil {
				t.Fatalf("the revoked task got the call's result: %q", r.resp.GetPayload().GetBody())
			}
			if st := status.Convert(r.err); st.Code() != codes.Unauthenticated {
				t.Errorf("the call ended with %v %q, want Unauthenticated (revoked)", st.Code(), st.Message())
			}
			if n := len(streamRefusals(t, rec, verifier.FrontendGRPC, verifier.ReasonRevoked)); n != 1 {
				t.Errorf("%d revoked refusals recorded, want 1", n)
			}
		})
	}
}

// BenchmarkGRPCUnaryInterceptor is the unary interceptor's own cost per
// call (JWT-SVID in the metadata, cached; a handler that returns at once;
// no network, no audit): the pipeline plus the call's guard (its timer
// armed and stopped, the re-check before the answer).
func BenchmarkGRPCUnaryInterceptor(b *testing.B) {
	e := newAttackEnv(b)
	e.v.Policy = loadPolicy(b, "rule \"g\" {\n effect = \"allow\"\n action {\n grpc {\n methods = [\"/kb.v1.KB/*\"]\n }\n }\n}\n")
	icpt := e.v.UnaryServerInterceptor()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.jwt))
	info := &grpc.UnaryServerInfo{FullMethod: "/kb.v1.KB/Get"}
	ok := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		if _, err := icpt(ctx, nil, info, ok); err != nil {
			b.Fatal(err)
		}
	}
}
