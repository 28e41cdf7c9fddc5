package verifier_test

import (
	"context"
	"crypto/x509"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"
)

// BenchmarkStreamGuardCheck is the per-message re-check of an open stream
// or upgraded connection: the pipeline's authentication stages for a
// cached credential, with the liveness view of 10,000 live tasks.
func BenchmarkStreamGuardCheck(b *testing.B) {
	e := benchStreamEnv(b)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	live := []string{taskID.String(), plannerID}
	for i := range 10_000 {
		live = append(live, "spiffe://example.org/agent/other/task/T-"+strconv.Itoa(i))
	}
	if err := view.Update(time.Now().Add(-time.Minute), live); err != nil {
		b.Fatal(err)
	}
	for name, c := range map[string]verifier.Credential{
		"x509": {Kind: verifier.CredentialX509, Chain: e.chain},
		"jwt":  {Kind: verifier.CredentialJWT, Value: e.jwt},
	} {
		for _, liveness := range []bool{false, true} {
			e.v.Liveness = nil
			if liveness {
				e.v.Liveness = view.Check
			}
			b.Run(name+map[bool]string{false: "", true: "/liveness"}[liveness], func(b *testing.B) {
				check, stop := verifier.StreamGuardCheck(e.v, verifier.FrontendGRPC, c, verifier.Action{Kind: "grpc", Path: "/grpc.testing.TestService/FullDuplexCall"}, time.Now().Add(time.Hour))
				defer stop()
				if err := check(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := check(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkStreamMessage is message round trips (client Send, server
// Recv and Send, client Recv) on an open bidirectional stream, without
// interceptors (plain) and behind the verifier's stream interceptor with
// the liveness view on (guarded): the difference is the wrapper's
// per-message cost — two re-checks and the receiver goroutine's hand-off.
// bufconn: an in-memory connection and a bearer JWT-SVID (no network: the
// worst case for the ratio); mtls: SPIFFE mTLS over loopback TCP. Rounds of
// 2,000 round trips alternate between the two; it reports the median
// ratio of the rates (guarded / plain, wall and process CPU) and each
// one's median time per round trip.
func BenchmarkStreamMessage(b *testing.B) {
	for _, transport := range []string{"bufconn", "mtls"} {
		b.Run(transport, func(b *testing.B) { benchStreamMessage(b, transport == "mtls") })
	}
}

func benchStreamMessage(b *testing.B, mtls bool) {
	e := benchStreamEnv(b)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	if err := view.Update(time.Now().Add(-time.Minute), []string{taskID.String(), plannerID}); err != nil {
		b.Fatal(err)
	}
	e.v.Liveness = view.Check
	e.v.Policy = loadPolicy(b, "rule \"g\" {\n effect = \"allow\"\n action {\n grpc {\n methods = [\"/grpc.testing.TestService/*\"]\n }\n }\n}\n")
	serverID := spiffeid.RequireFromString("spiffe://example.org/kb")
	open := func(guarded bool) testgrpc.TestService_FullDuplexCallClient {
		var opts []grpc.ServerOption
		if guarded {
			opts = append(opts, grpc.StreamInterceptor(e.v.StreamServerInterceptor()))
		}
		var l net.Listener
		dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		target := "passthrough:///bufnet"
		if mtls {
			var err error
			if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				b.Fatal(err)
			}
			opts = append(opts, grpc.Creds(credentials.NewTLS(verifier.ServerTLSConfig(e.ca.CreateX509SVID(serverID), e.ca.X509Bundle()))))
			dial = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(verifier.ClientTLSConfig(e.svid, e.ca.X509Bundle(), tlsconfig.AuthorizeID(serverID))))}
			target = l.Addr().String()
		} else {
			bl := bufconn.Listen(1 << 20)
			l = bl
			dial = append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return bl.DialContext(ctx) }))
		}
		srv := grpc.NewServer(opts...)
		testgrpc.RegisterTestServiceServer(srv, echoDuplex{})
		go srv.Serve(l)
		b.Cleanup(srv.Stop)
		conn, err := grpc.NewClient(target, dial...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		ctx := context.Background()
		if !mtls {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.jwt)
		}
		ctx, cancel := context.WithCancel(ctx)
		b.Cleanup(cancel)
		stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return stream
	}
	streams := [2]testgrpc.TestService_FullDuplexCallClient{open(false), open(true)}
	req := &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}}
	const n = 2000
	round := func(s testgrpc.TestService_FullDuplexCallClient) (wall, cpu time.Duration) {
		start, cpu0 := time.Now(), processCPU()
		for range n {
			if err := s.Send(req); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start), processCPU() - cpu0
	}
	round(streams[0])
	round(streams[1])
	var ratios, cpuRatios, plain, guarded []float64
	for b.Loop() {
		pw, pc := round(streams[0])
		gw, gc := round(streams[1])
		ratios = append(ratios, float64(pw)/float64(gw))
		cpuRatios = append(cpuRatios, float64(pc)/float64(gc))
		plain = append(plain, float64(pw.Nanoseconds())/n)
		guarded = append(guarded, float64(gw.Nanoseconds())/n)
	}
	median := func(x []float64) float64 { return slices.Sorted(slices.Values(x))[len(x)/2] }
	b.ReportMetric(median(ratios), "ratio")
	b.ReportMetric(median(cpuRatios), "cpu-ratio")
	b.ReportMetric(median(plain), "plain-ns/msg")
	b.ReportMetric(median(guarded), "guarded-ns/msg")
	b.ReportMetric(0, "ns/op")
}

// echoDuplex echoes each message of a FullDuplexCall.
type echoDuplex struct {
	testgrpc.UnimplementedTestServiceServer
}

func (echoDuplex) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		in, err := s.Recv()
		if err != nil {
			return nil
		}
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

type streamEnv struct {
	ca    *testca.CA
	v     *verifier.Verifier
	svid  *x509svid.SVID
	chain []*x509.Certificate
	jwt   string
}

// benchStreamEnv is newAttackEnv for benchmarks.
func benchStreamEnv(b *testing.B) *streamEnv {
	ca := testca.New(b, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	ext, err := c.Extension(nil)
	if err != nil {
		b.Fatal(err)
	}
	s := ca.CreateX509SVID(taskID, testca.WithExtensions(ext))
	return &streamEnv{
		ca:   ca,
		svid: s,
		v: &verifier.Verifier{
			Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}),
			Policy: loadPolicy(b, attackPolicy),
		},
		chain: s.Certificates,
		jwt:   ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()),
	}
}

// BenchmarkStreamGuardStart is what holding an exchange costs once: the
// guard's start and stop (its query copy, context, idle timer) — paid per
// gRPC stream, upgraded connection and streamed proxy response.
func BenchmarkStreamGuardStart(b *testing.B) {
	e := benchStreamEnv(b)
	c := verifier.Credential{Kind: verifier.CredentialX509, Chain: e.chain}
	a := verifier.Action{Kind: "grpc", Path: "/grpc.testing.TestService/FullDuplexCall"}
	expires := time.Now().Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		_, stop := verifier.StreamGuardCheck(e.v, verifier.FrontendGRPC, c, a, expires)
		stop()
	}
}
