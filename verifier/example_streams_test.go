package verifier_test

import (
	"context"
	"fmt"
	"net"

	"github.com/agentid/agentid/verifier"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// ExampleVerifier_StreamServerInterceptor puts a gRPC server behind the
// verifier with the kill switch on: a stream is decided when it starts
// and its peer re-checked on every message (and every
// StreamRecheckInterval while idle), so a stream opened before its task's
// revocation ends at the next message with the refusal a new call gets.
// Here the caller has no credential, so the stream is refused at once.
func ExampleVerifier_StreamServerInterceptor() {
	view := &verifier.LivenessView{} // fed by the registrars' WatchLiveness stream (the daemon's liveness { … })
	v := &verifier.Verifier{
		Auth:     verifier.NewAuthenticator(verifier.Config{}), // X509Bundles, JWTBundles, … from SPIRE
		Policy:   verifier.PolicyFunc(nil),                     // not asked: no peer authenticates here
		Liveness: view.Check,
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(v.UnaryServerInterceptor()), grpc.StreamInterceptor(v.StreamServerInterceptor()))
	testgrpc.RegisterTestServiceServer(srv, echoDuplex{})
	l := bufconn.Listen(1 << 16)
	go srv.Serve(l)
	defer srv.Stop()

	conn, _ := grpc.NewClient("passthrough:///bufnet", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	stream, _ := testgrpc.NewTestServiceClient(conn).FullDuplexCall(context.Background())
	_, err := stream.Recv()
	fmt.Println(status.Code(err), status.Convert(err).Message())
	fmt.Println("idle streams re-checked every", verifier.StreamRecheckInterval)
	// Output:
	// Unauthenticated verifier: no_credential: no client certificate or bearer JWT-SVID
	// idle streams re-checked every 1s
}
