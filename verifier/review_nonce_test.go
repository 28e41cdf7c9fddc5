package verifier_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentid/agentid/svid/httpsig"
)

// TestReviewNonceReplayAtWindowEdge: a signature with a lifetime longer
// than the window (the signer chooses expires), first presented when its
// created is a full window ahead of the verifier's clock, replayed
// exactly two windows later: the nonce entry has just expired while
// created is still within the window.
func TestReviewNonceReplayAtWindowEdge(t *testing.T) {
	e := newSigEnv(t)
	c := e.now
	m := &httpsig.Message{Method: "POST", TargetURI: "https://kb.internal/pay", Header: http.Header{}}
	s := httpsig.RequestSigner{Chain: e.svidA.Certificates, Key: e.svidA.PrivateKey, Lifetime: 5 * time.Minute}
	if _, err := s.Sign(m, []byte("{}"), c); err != nil {
		t.Fatal(err)
	}
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	send := func(at time.Time) (int, string) {
		e.v.Clock = func() time.Time { return at }
		r := httptest.NewRequest("POST", "https://kb.internal/pay", bytes.NewReader([]byte("{}")))
		r.Header = m.Header.Clone()
		r.TLS = &tls.ConnectionState{PeerCertificates: e.svidA.Certificates}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code, rec.Header().Get("X-Agentid-Deny-Reason")
	}
	if code, reason := send(c.Add(-time.Minute)); code != 200 {
		t.Fatalf("first: %d %s", code, reason)
	}
	if code, reason := send(c.Add(time.Minute)); code == 200 {
		t.Fatalf("the same nonce was accepted twice (replay at created+window)")
	} else {
		t.Logf("replay refused: %d %s", code, reason)
	}
}
