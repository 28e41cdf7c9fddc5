package verifier_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// TestReviewExtAuthzBodylessHTTP2: Envoy without with_request_body sends
// no body; an HTTP/2 request need not declare Content-Length (nor has
// Transfer-Encoding). A signature over the empty body must not be
// accepted as covering a request whose body the verifier never saw.
func TestReviewExtAuthzBodylessHTTP2(t *testing.T) {
	e := newSigEnv(t)
	m := &httpsig.Message{Method: "POST", TargetURI: "https://kb.internal/pay", Header: http.Header{}}
	s := httpsig.RequestSigner{Chain: e.svidA.Certificates, Key: e.svidA.PrivateKey}
	if _, err := s.Sign(m, nil, e.now); err != nil {
		t.Fatal(err)
	}
	headers := map[string]string{":authority": "kb.internal", ":method": "POST", ":path": "/pay"}
	for k, v := range m.Header {
		headers[strings.ToLower(k)] = v[0]
	}
	pemA, _ := testca.SVIDPEM(t, e.svidA)
	req := checkReq(url.PathEscape(string(pemA)), "POST", "/pay", headers, "")
	h := req.Attributes.Request.Http
	h.Host, h.Scheme, h.Protocol, h.Size = "kb.internal", "https", "HTTP/2", -1
	resp, err := (&verifier.ExtAuthz{V: e.v}).Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if c := code.Code(resp.GetStatus().GetCode()); c == code.Code_OK {
		t.Fatalf("a signature over an empty body allowed an HTTP/2 request whose body (size unknown) the verifier never received")
	}
}

// TestExtAuthzSignedBodyKnown: which ext_authz requests count as having
// their body known to the verifier. A signature over the empty body holds
// for a request that states it has none (content-length: 0, or a GET of
// size 0); a request of unknown size whose body Envoy did not pass is
// signature_unverifiable, also when the client adds its own
// x-envoy-auth-partial-body: false.
func TestExtAuthzSignedBodyKnown(t *testing.T) {
	e := newSigEnv(t)
	pemA, _ := testca.SVIDPEM(t, e.svidA)
	ea := &verifier.ExtAuthz{V: e.v}
	check := func(method, path string, size int64, extra map[string]string) (code.Code, string) {
		m := &httpsig.Message{Method: method, TargetURI: "https://kb.internal" + path, Header: http.Header{}}
		s := httpsig.RequestSigner{Chain: e.svidA.Certificates, Key: e.svidA.PrivateKey}
		if _, err := s.Sign(m, nil, e.now); err != nil {
			t.Fatal(err)
		}
		headers := map[string]string{":authority": "kb.internal", ":method": method, ":path": path}
		for k, v := range m.Header {
			headers[strings.ToLower(k)] = v[0]
		}
		for k, v := range extra {
			headers[k] = v
		}
		req := checkReq(url.PathEscape(string(pemA)), method, path, headers, "")
		h := req.Attributes.Request.Http
		h.Host, h.Scheme, h.Protocol, h.Size = "kb.internal", "https", "HTTP/2", size
		resp, err := ea.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return code.Code(resp.GetStatus().GetCode()), resp.GetStatus().GetMessage()
	}
	for _, tc := range []struct {
		name         string
		method, path string
		size         int64
		headers      map[string]string
		known        bool
	}{
		{"POST content-length 0", "POST", "/pay", 0, map[string]string{"content-length": "0"}, true},
		{"GET size 0", "GET", "/kb/x", 0, nil, true},
		{"GET size unknown", "GET", "/kb/x", -1, nil, false},
		{"POST size 0 without content-length", "POST", "/pay", 0, nil, false},
		{"POST content-length 5, no body passed", "POST", "/pay", 5, map[string]string{"content-length": "5"}, false},
		{"POST with the client's own partial-body false", "POST", "/pay", -1, map[string]string{"x-envoy-auth-partial-body": "false"}, false},
		{"GET with transfer-encoding", "GET", "/kb/x", 0, map[string]string{"transfer-encoding": "chunked"}, false},
	} {
		c, msg := check(tc.method, tc.path, tc.size, tc.headers)
		if tc.known && c != code.Code_OK {
			t.Errorf("%s: %v %s, want OK", tc.name, c, msg)
		}
		if !tc.known && (c != code.Code_UNAUTHENTICATED || !strings.Contains(msg, httpsig.ReasonUnverifiable)) {
			t.Errorf("%s: %v %s, want %s", tc.name, c, msg, httpsig.ReasonUnverifiable)
		}
	}
}
