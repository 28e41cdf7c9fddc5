package verifier_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentid/agentid/svid/httpsig"
)

// signedHeaders signs POST https://kb.internal/pay with body as signer at
// at (lifetime life, 0: the default) and returns the request's headers.
func signedHeaders(t *testing.T, signer *x509svid.SVID, body string, at time.Time, life time.Duration) http.Header {
	t.Helper()
	m := &httpsig.Message{Method: "POST", TargetURI: "https://kb.internal/pay", Header: http.Header{}}
	s := httpsig.RequestSigner{Chain: signer.Certificates, Key: signer.PrivateKey, Lifetime: life}
	if _, err := s.Sign(m, []byte(body), at); err != nil {
		t.Fatal(err)
	}
	return m.Header
}

// sendSigned sends a request with headers h and body, on a TLS connection
// authenticated as peer, to the middleware at the verifier's clock at;
// target is the request URL (its host is the Host header).
func (e *sigEnv) sendSigned(t *testing.T, peer *x509svid.SVID, target string, h http.Header, body string, at time.Time) (int, string) {
	t.Helper()
	e.v.Clock = func() time.Time { return at }
	handler := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	r := httptest.NewRequest("POST", target, bytes.NewReader([]byte(body)))
	r.Header = h.Clone()
	r.TLS = &tls.ConnectionState{PeerCertificates: peer.Certificates}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, r)
	return rec.Code, rec.Header().Get("X-Agentid-Deny-Reason")
}

// TestReviewSignatureAttacks (security review of issue 17): each attack on
// an agent-signed request through the middleware is refused with its
// reason; the unaltered request is accepted once.
func TestReviewSignatureAttacks(t *testing.T) {
	e := newSigEnv(t)
	const url = "https://kb.internal/pay"
	body := `{"amount":10}`
	h := signedHeaders(t, e.svidA, body, e.now, 0)
	if code, reason := e.sendSigned(t, e.svidA, url, h, body, e.now); code != 200 {
		t.Fatalf("the signed request: %d %s", code, reason)
	}
	relabel := func(h http.Header, to string) http.Header {
		h = h.Clone()
		h.Set("Signature-Input", strings.Replace(h.Get("Signature-Input"), "agentid=", to+"=", 1))
		h.Set("Signature", strings.Replace(h.Get("Signature"), "agentid=", to+"=", 1))
		return h
	}
	twice := func(h http.Header) http.Header {
		h = h.Clone()
		h.Set("Signature-Input", h.Get("Signature-Input")+", "+strings.Replace(h.Get("Signature-Input"), "agentid=", "again=", 1))
		h.Set("Signature", h.Get("Signature")+", "+strings.Replace(h.Get("Signature"), "agentid=", "again=", 1))
		return h
	}
	edit := func(h http.Header, field, from, to string) http.Header {
		h = h.Clone()
		h.Set(field, strings.Replace(h.Get(field), from, to, 1))
		return h
	}
	nonceUpper := func(h http.Header) http.Header {
		in := h.Get("Signature-Input")
		i := strings.Index(in, `nonce="`) + len(`nonce="`)
		j := i + strings.IndexByte(in[i:], '"')
		return edit(h, "Signature-Input", in[i:j], strings.ToUpper(in[i:j])+"x")
	}
	extraSVID := func(h http.Header) http.Header {
		h = h.Clone()
		h.Add(httpsig.HeaderSVID, httpsig.EncodeChain(e.svidB.Certificates))
		return h
	}
	long := signedHeaders(t, e.svidA, body, e.now, 10*time.Minute)
	for _, tc := range []struct {
		name   string
		peer   *x509svid.SVID
		target string
		h      http.Header
		body   string
		at     time.Time
		reason string
	}{
		{"replayed", e.svidA, url, h, body, e.now, httpsig.ReasonReplayed},
		{"replayed under another label", e.svidA, url, relabel(h, "sig2"), body, e.now, httpsig.ReasonReplayed},
		{"two agentid signatures", e.svidA, url, twice(signedHeaders(t, e.svidA, body, e.now, 0)), body, e.now, httpsig.ReasonMalformed},
		{"nonce altered (case)", e.svidA, url, nonceUpper(signedHeaders(t, e.svidA, body, e.now, 0)), body, e.now, httpsig.ReasonInvalid},
		{"Host rewritten", e.svidA, "https://other.internal/pay", signedHeaders(t, e.svidA, body, e.now, 0), body, e.now, httpsig.ReasonInvalid},
		{"query added", e.svidA, url + "?amount=9999", signedHeaders(t, e.svidA, body, e.now, 0), body, e.now, httpsig.ReasonInvalid},
		{"another task's connection", e.svidB, url, signedHeaders(t, e.svidA, body, e.now, 0), body, e.now, httpsig.ReasonCertMismatch},
		{"a second Agentid-Svid line", e.svidA, url, extraSVID(signedHeaders(t, e.svidA, body, e.now, 0)), body, e.now, httpsig.ReasonInvalid},
		{"body changed", e.svidA, url, signedHeaders(t, e.svidA, body, e.now, 0), `{"amount":9999}`, e.now, httpsig.ReasonDigest},
		{"Content-Digest swapped for the new body", e.svidA, url, edit(signedHeaders(t, e.svidA, body, e.now, 0), "Content-Digest",
			httpsig.ContentDigest([]byte(body)), httpsig.ContentDigest([]byte(`{"amount":9999}`))), `{"amount":9999}`, e.now, httpsig.ReasonInvalid},
		{"created beyond the window ahead", e.svidA, url, signedHeaders(t, e.svidA, body, e.now.Add(2*time.Minute), 0), body, e.now, httpsig.ReasonStale},
		{"expired, created within the window", e.svidA, url, signedHeaders(t, e.svidA, body, e.now, time.Second), body, e.now.Add(2 * time.Second), httpsig.ReasonStale},
		{"a long-lived signature (10 min), first used 30 s after created", e.svidA, url, long, body, e.now.Add(30 * time.Second), ""},
		{"and again, 50 s later", e.svidA, url, long, body, e.now.Add(50 * time.Second), httpsig.ReasonReplayed},
		{"and after the window", e.svidA, url, long, body, e.now.Add(90 * time.Second), httpsig.ReasonStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := e.sendSigned(t, tc.peer, tc.target, tc.h, tc.body, tc.at)
			if tc.reason == "" {
				if code != 200 {
					t.Fatalf("%d %s", code, reason)
				}
				return
			}
			if code != http.StatusUnauthorized || !strings.Contains(reason, tc.reason+":") {
				t.Fatalf("got %d %q, want 401 %s", code, reason, tc.reason)
			}
		})
	}
}
