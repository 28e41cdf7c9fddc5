package verifier_test

// gRPC calls that a real grpc-go server
// runs but that the verifier's HTTP front-ends decide as something else.

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcKindPolicy is TestAttackGRPCKindAlike's policy: the service is open
// to kb:read holders over HTTP and gRPC, except the gRPC Delete.
const grpcKindPolicy = `
rule "api" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      paths = ["/**"]
    }
    grpc {
      methods = ["/kb.v1.KB/*"]
    }
  }
}
rule "no-delete" {
  effect = "deny"
  action {
    grpc {
      methods = ["/kb.v1.KB/Delete"]
    }
  }
}
`

// kbGRPCServer is a real grpc-go server with the service kb.v1.KB (Get,
// Delete; empty messages); ran receives the name of each method it runs.
func kbGRPCServer(opts ...grpc.ServerOption) (*grpc.Server, chan string) {
	ran := make(chan string, 16)
	h := func(name string) grpc.MethodHandler {
		return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			run := func(ctx context.Context, req any) (any, error) {
				ran <- name
				return &emptypb.Empty{}, nil
			}
			if icpt == nil {
				return run(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/kb.v1.KB/" + name}, run)
		}
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "kb.v1.KB",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Get", Handler: h("Get")}, {MethodName: "Delete", Handler: h("Delete")}},
	}, struct{}{})
	return s, ran
}

// rawGRPC sends one unary gRPC call (an empty message) over HTTP/2 with
// (or HTTP/1.1 where the server offers only that) with exactly the
// Content-Type lines given, and returns the HTTP status and
// the grpc-status trailer.
func rawGRPC(t *testing.T, c *http.Client, url string, contentTypes []string, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header["Content-Type"] = contentTypes
	req.Header.Set("TE", "trailers")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	// (the proxy's client side is HTTP/1.1: its listener offers no h2;
	// it forwards to the upstream over HTTP/2)
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status")
	}
	return resp.StatusCode, st
}

// ranMethod is the method the server ran for the call just answered, or
// "": kbGRPCServer's handler records the name before it returns, and the
// server answers only after that, so once the client has read the whole
// response the record is there (no waiting).
func ranMethod(ran chan string) string {
	select {
	case m := <-ran:
		return m
	default:
		return ""
	}
}

// TestAttackGRPCContentTypeList: a Content-Type whose parameter
// holds a comma ("application/grpc;v=a,b") or a second Content-Type line
// makes isGRPCContentType say "not gRPC", so ext_authz and the middleware
// decide the call as {http, POST, /kb.v1.KB/Delete} (allowed by the http
// rule) — but grpc-go reads the first valid line (HTTP/2 transport) or
// the first line (ServeHTTP) and only up to ";" and runs Delete, past the
// grpc deny the interceptors apply.
func TestAttackGRPCContentTypeList(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, grpcKindPolicy)
	bearer := "Bearer " + e.jwt

	// 1. The middleware in front of grpc-go's ServeHTTP over real TLS HTTP/2.
	gs, ran := kbGRPCServer()
	srv := httptest.NewUnstartedServer(e.v.Middleware(gs))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	for _, ct := range [][]string{
		{"application/grpc"},               // control: decided as gRPC, denied
		{"application/grpc;v=a,b"},         // one line, a comma in a parameter
		{"application/grpc", "text/plain"}, // two lines: ServeHTTP reads the first
	} {
		st, gst := rawGRPC(t, srv.Client(), srv.URL+"/kb.v1.KB/Delete", ct, bearer)
		if m := ranMethod(ran); m != "" {
			t.Errorf("middleware + grpc-go ServeHTTP, Content-Type %q: HTTP %d grpc-status %q, grpc-go ran %s past the grpc deny", ct, st, gst, m)
		} else if st != http.StatusForbidden {
			t.Logf("middleware, Content-Type %q: HTTP %d grpc-status %q, nothing ran", ct, st, gst)
		}
	}

	// 2. ext_authz: Envoy sends the joined Content-Type; the upstream, a
	// grpc-go server on its own HTTP/2 transport, gets the lines as sent.
	gs2, ran2 := kbGRPCServer()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs2.Serve(l)
	t.Cleanup(gs2.Stop)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, ct := range [][]string{
		{"application/grpc;v=a,b"},
		{"text/plain", "application/grpc"}, // the HTTP/2 transport takes any valid line
	} {
		joined := ct[0]
		for _, s := range ct[1:] {
			joined += "," + s
		}
		resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb.v1.KB/Delete", map[string]string{"content-type": joined}, ""))
		got := code.Code(resp.GetStatus().GetCode())
		if got != code.Code_OK {
			continue // refused: not exploitable
		}
		st, gst := rawGRPC(t, h2c, "http://"+l.Addr().String()+"/kb.v1.KB/Delete", ct, "")
		if m := ranMethod(ran2); m != "" {
			t.Errorf("ext_authz, Content-Type %q: %v (allowed as http POST); the grpc-go upstream answers HTTP %d grpc-status %q and ran %s", joined, got, st, gst, m)
		}
	}

	// 3. The proxy (mTLS from the task, over HTTP/1.1) forwarding over h2c
	// (Proxy.Transport) to the same grpc-go upstream.
	u, _ := url.Parse("http://" + l.Addr().String())
	p := verifier.NewProxy(e.v, u, nil)
	p.Transport = tr
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	pl, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	ps := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	go ps.Serve(pl)
	t.Cleanup(func() { ps.Close() })
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	pc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: verifier.ClientTLSConfig(
		e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))}}
	for _, ct := range [][]string{
		{"application/grpc"}, // control
		{"application/grpc;v=a,b"},
		{"text/plain", "application/grpc"},
	} {
		st, gst := rawGRPC(t, pc, "https://"+pl.Addr().String()+"/kb.v1.KB/Delete", ct, "")
		if m := ranMethod(ran2); m != "" {
			t.Errorf("proxy, Content-Type %q: HTTP %d grpc-status %q, the grpc-go upstream ran %s past the grpc deny", ct, st, gst, m)
		} else if st != http.StatusForbidden {
			t.Logf("proxy, Content-Type %q: HTTP %d grpc-status %q, nothing ran", ct, st, gst)
		}
	}
}
