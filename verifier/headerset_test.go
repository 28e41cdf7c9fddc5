package verifier_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// TestIdentityHeaderSet: the proxy and ext_authz send the selected
// identity headers (DefaultHeaders: all but x-agentid-claims), and a
// forged incoming header of a kind not selected is removed all the same.
func TestIdentityHeaderSet(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	svidCert := ca.CreateX509SVID(taskID, ext(t, c))
	certPEM, _ := testca.SVIDPEM(t, svidCert)
	forged := map[string]string{"x-agentid-claims": "Zm9yZ2Vk", "x-agentid-principal": "spiffe://example.org/user/mallory"}

	for _, tc := range []struct {
		name string
		set  verifier.HeaderSet
		want []string
	}{
		{"default", 0, []string{verifier.HeaderAgent, verifier.HeaderPrincipal, verifier.HeaderRule, verifier.HeaderSPIFFEID, verifier.HeaderTask}},
		{"all", verifier.AllHeaders, []string{verifier.HeaderAgent, verifier.HeaderClaims, verifier.HeaderPrincipal, verifier.HeaderRule, verifier.HeaderSPIFFEID, verifier.HeaderTask}},
		{"spiffe_id and task", verifier.SendSPIFFEID | verifier.SendTask, []string{verifier.HeaderSPIFFEID, verifier.HeaderTask}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: mcpPolicy, Headers: tc.set}

			// ext_authz, as Envoy applies the OK response.
			resp, err := (&verifier.ExtAuthz{V: v}).Check(context.Background(), checkReq(url.PathEscape(string(certPEM)), "GET", "/kb/doc-1", forged, ""))
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("ext_authz: %v %v", resp, err)
			}
			got := applyAsEnvoy(forged, resp.GetOkResponse())
			if keys := slices.Sorted(func(yield func(string) bool) {
				for k := range got {
					if !yield(k) {
						return
					}
				}
			}); !slices.Equal(keys, tc.want) {
				t.Fatalf("ext_authz: upstream gets %q, want %q", keys, tc.want)
			}
			checkValues(t, "ext_authz", got)

			// The proxy, to a real upstream.
			seen := make(chan http.Header, 1)
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
			defer up.Close()
			u, _ := url.Parse(up.URL)
			p := verifier.NewProxy(v, u, nil)
			r := httptest.NewRequest("GET", "https://kb/kb/doc-1", nil)
			for k, val := range forged {
				r.Header.Set(k, val)
			}
			r.TLS = &tls.ConnectionState{PeerCertificates: svidCert.Certificates}
			w := httptest.NewRecorder()
			p.ServeHTTP(w, r)
			if w.Code != 200 {
				body, _ := io.ReadAll(w.Body)
				t.Fatalf("proxy: %d %s", w.Code, body)
			}
			h := <-seen
			ph := map[string]string{}
			for k := range h {
				if lk := strings.ToLower(k); strings.HasPrefix(lk, verifier.HeaderPrefix) {
					ph[lk] = h.Get(k)
				}
			}
			if keys := slices.Sorted(func(yield func(string) bool) {
				for k := range ph {
					if !yield(k) {
						return
					}
				}
			}); !slices.Equal(keys, tc.want) {
				t.Fatalf("proxy: upstream gets %q, want %q", keys, tc.want)
			}
			checkValues(t, "proxy", ph)
		})
	}
}

func checkValues(t *testing.T, front string, h map[string]string) {
	t.Helper()
	if v, ok := h[verifier.HeaderPrincipal]; ok && v != "spiffe://example.org/user/alice" {
		t.Fatalf("%s: principal %q", front, v)
	}
	if v, ok := h[verifier.HeaderClaims]; ok && v == "Zm9yZ2Vk" {
		t.Fatalf("%s: the forged claims header reaches the upstream", front)
	}
}

func TestParseHeaderSet(t *testing.T) {
	if s, err := verifier.ParseHeaderSet([]string{"spiffe_id", "claims"}); err != nil || s != verifier.SendSPIFFEID|verifier.SendClaims {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range [][]string{nil, {"spiffe-id"}, {"task", "task"}} {
		if _, err := verifier.ParseHeaderSet(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// TestMiddlewareStripsForgedIdentityHeaders: a handler behind the
// in-process Middleware must not find a caller's x-agentid-* headers in
// r.Header, where a handler written for the proxy would read them as the
// verifier's word (found by the session-2 review: the proxy and ext_authz
// removed them, the middleware left them).
func TestMiddlewareStripsForgedIdentityHeaders(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: mcpPolicy}
	var seen http.Header
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.Header.Clone() }))
	r := httptest.NewRequest("GET", "https://kb/kb/doc-1", nil)
	r.Header.Set("X-Agentid-Task", "T-admin")
	r.Header["x-agentid-principal"] = []string{"spiffe://example.org/user/mallory"} // not canonical
	r.Header.Set("X-Other", "kept")
	r.TLS = &tls.ConnectionState{PeerCertificates: ca.CreateX509SVID(taskID, ext(t, c)).Certificates}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	for k := range seen {
		if strings.HasPrefix(strings.ToLower(k), verifier.HeaderPrefix) {
			t.Fatalf("the handler sees %s: %q", k, seen[k])
		}
	}
	if seen.Get("X-Other") != "kept" {
		t.Fatalf("other headers lost: %v", seen)
	}
}

// TestGRPCInterceptorStripsForgedIdentityMetadata: the same for gRPC: a
// handler behind the interceptor finds no caller-sent x-agentid-* metadata.
func TestGRPCInterceptorStripsForgedIdentityMetadata(t *testing.T) {
	ca := testca.New(t, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: scopePolicy}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-agentid-task", "T-admin", "x-other", "kept"))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
		PeerCertificates: ca.CreateX509SVID(taskID, ext(t, c)).Certificates}}})
	var seen metadata.MD
	_, err := v.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}, func(ctx context.Context, _ any) (any, error) {
		seen, _ = metadata.FromIncomingContext(ctx)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := seen.Get("x-agentid-task"); len(got) != 0 || seen.Get("x-other")[0] != "kept" {
		t.Fatalf("the handler sees %v", seen)
	}
	// The caller's own metadata is not changed.
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-agentid-task")) != 1 {
		t.Fatalf("caller's metadata changed: %v", md)
	}
}
