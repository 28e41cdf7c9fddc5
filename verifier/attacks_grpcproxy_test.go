package verifier_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// passFrame is a gRPC message passed through as bytes (a transparent
// gRPC proxy's codec, as mwitkow/grpc-proxy's).
type passFrame struct{ b []byte }

type passCodec struct{}

func (passCodec) Marshal(v any) ([]byte, error) { return v.(*passFrame).b, nil }
func (passCodec) Unmarshal(data []byte, v any) error {
	v.(*passFrame).b = append([]byte(nil), data...)
	return nil
}
func (passCodec) Name() string { return "proto" }

// transparentProxy is a grpc.UnknownServiceHandler forwarding every call,
// under its full method as received, to backend.
func transparentProxy(backend *grpc.ClientConn) grpc.StreamHandler {
	return func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		cs, err := backend.NewStream(ss.Context(), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(passCodec{}))
		if err != nil {
			return err
		}
		for {
			m := new(passFrame)
			if err := ss.RecvMsg(m); err == io.EOF {
				break
			} else if err != nil {
				return err
			}
			if err := cs.SendMsg(m); err != nil {
				return err
			}
		}
		cs.CloseSend()
		for {
			m := new(passFrame)
			if err := cs.RecvMsg(m); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
			if err := ss.SendMsg(m); err != nil {
				return err
			}
		}
	}
}

// TestAttackGRPCInterceptorMethodSpelling: the
// interceptors decide info.FullMethod, which grpc-go's own transport takes
// from :path as sent, and checkGRPCMethod lets "%", "?" and "#" through,
// so "/kb.v1.KB/%44elete" and "/kb.v1.KB/Delete?x" are decided as methods
// of their own: the deny on /kb.v1.KB/Delete does not match them and the
// allow of /kb.v1.KB/* does. A gRPC proxy guarded by the interceptors
// (grpc.UnknownServiceHandler forwarding the method as received, as
// grpc-proxy does) passes them on, and a backend on net/http — grpc-go's
// Server.ServeHTTP (method = r.URL.Path, decoded, without the query),
// connect-go — runs Delete. ext_authz and the middleware refuse or strip
// both spellings.
func TestAttackGRPCInterceptorMethodSpelling(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, grpcKindPolicy)

	// The backend: grpc-go served through net/http (h2c).
	gs, ran := kbGRPCServer()
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: gs, Protocols: new(http.Protocols), ErrorLog: log.New(io.Discard, "", 0)}
	hs.Protocols.SetUnencryptedHTTP2(true)
	go hs.Serve(bl)
	t.Cleanup(func() { hs.Close() })
	backend, err := grpc.NewClient("passthrough:///"+bl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })

	// The proxy: grpc-go over SPIFFE mTLS with the verifier's interceptors.
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	front := grpc.NewServer(grpc.Creds(credentials.NewTLS(verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))),
		grpc.UnaryInterceptor(e.v.UnaryServerInterceptor()), grpc.StreamInterceptor(e.v.StreamServerInterceptor()),
		grpc.ForceServerCodec(passCodec{}), grpc.UnknownServiceHandler(transparentProxy(backend)))
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go front.Serve(fl)
	t.Cleanup(front.Stop)

	// The agent: its task SVID over mTLS.
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	conn, err := grpc.NewClient("passthrough:///"+fl.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(
		verifier.ClientTLSConfig(e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID)))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, m := range []string{"/kb.v1.KB/Get", "/kb.v1.KB/Delete", "/kb.v1.KB/%44elete", "/kb.v1.KB/Delete?x=1", "/kb.v1.KB/Delete#x"} {
		err := conn.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{})
		got := ranMethod(ran) // the call has been answered
		t.Logf("%s: %v; the backend ran %q", m, status.Code(err), got)
		switch {
		case m == "/kb.v1.KB/Get":
			if err != nil || got != "Get" {
				t.Fatalf("control %s: %v, ran %q", m, err, got)
			}
		case m == "/kb.v1.KB/Delete":
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("control %s: %v", m, err)
			}
		case got == "Delete":
			// What ext_authz says about the same :path (the contrast).
			ea := e.extAuthz(t, checkReq(e.certPEM, "POST", m, map[string]string{"content-type": "application/grpc"}, ""))
			t.Errorf("%s: allowed by the interceptor (%v) and the backend ran Delete, past the deny on /kb.v1.KB/Delete (ext_authz on the same :path: %v %q)", m, status.Code(err), code.Code(ea.GetStatus().GetCode()), ea.GetStatus().GetMessage())
		}
	}
}

// TestGRPCMethodGrammar: the interceptors decide a method only when it is
// spelled as protobuf names one (/pkg.Service/Method, identifiers
// [A-Za-z_][A-Za-z0-9_]*); grpc-go's own services (health, reflection)
// and names without a package pass, anything else is InvalidArgument
// (TestAttackGRPCInterceptorMethodSpelling).
func TestGRPCMethodGrammar(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, grpcKindPolicy)
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.jwt))
	icpt := e.v.UnaryServerInterceptor()
	for m, want := range map[string]codes.Code{
		"/kb.v1.KB/Get":                codes.OK,
		"/kb.v1.KB/_Get_2":             codes.OK,
		"/kb.v1.KB/Delete":             codes.PermissionDenied,
		"/Greeter/SayHello":            codes.PermissionDenied, // no package: allowed grammar, default deny
		"/grpc.health.v1.Health/Check": codes.PermissionDenied,
		"/grpc.health.v1.Health/Watch": codes.PermissionDenied,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      codes.PermissionDenied,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": codes.PermissionDenied,
		"/_p._Q/_m":            codes.PermissionDenied,
		"/kb.v1.KB/%44elete":   codes.InvalidArgument,
		"/kb.v1.KB/Delete?x=1": codes.InvalidArgument,
		"/kb.v1.KB/Delete#x":   codes.InvalidArgument,
		"/kb.v1.KB/Delete;x":   codes.InvalidArgument,
		"/kb.v1.KB/Del%65te":   codes.InvalidArgument,
		"/kb..v1.KB/Get":       codes.InvalidArgument,
		"/.kb.v1.KB/Get":       codes.InvalidArgument,
		"/kb.v1.KB./Get":       codes.InvalidArgument,
		"/kb.1v.KB/Get":        codes.InvalidArgument,
		"/kb.v1.KB/1Get":       codes.InvalidArgument,
		"/kb-v1.KB/Get":        codes.InvalidArgument,
		"/kb.v1.KB/Gét":        codes.InvalidArgument,
		"/kb.v1.KB/Get/x":      codes.InvalidArgument,
		"kb.v1.KB/Get":         codes.InvalidArgument,
		"//kb.v1.KB/Get":       codes.InvalidArgument,
		"/kb.v1.KB/":           codes.InvalidArgument,
	} {
		ran := false
		_, err := icpt(ctx, nil, &grpc.UnaryServerInfo{FullMethod: m}, func(context.Context, any) (any, error) { ran = true; return nil, nil })
		if got := status.Code(err); got != want || ran != (want == codes.OK) {
			t.Errorf("%s: %v (handler ran: %v), want %v", m, err, ran, want)
		}
	}
}
