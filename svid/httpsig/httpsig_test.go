package httpsig_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	taskA = spiffeid.RequireFromPath(td, "/agent/a/task/t1")
	taskB = spiffeid.RequireFromPath(td, "/agent/b/task/t2")
	t0    = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
)

// captured is a request as a real HTTP server received it.
type captured struct {
	msg  *httpsig.Message
	body []byte
}

// send makes req through a Transport signing with svid at time at, to a
// real HTTP server, and returns what the server received.
func send(t *testing.T, svid *x509svid.SVID, at time.Time, method, path string, body []byte, mutate func(*http.Request)) captured {
	t.Helper()
	got := make(chan captured, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{httpsig.RequestMessage(r), b}
	}))
	defer srv.Close()
	tr := &httpsig.Transport{Source: svid, Clock: func() time.Time { return at }}
	var base http.RoundTripper = http.DefaultTransport
	if mutate != nil {
		base = roundTripFunc(func(r *http.Request) (*http.Response, error) { mutate(r); return http.DefaultTransport.RoundTrip(r) })
	}
	tr.Base = base
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, srv.URL+path, rd)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return <-got
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTransportSignsWhatTheServerReceives(t *testing.T) {
	ca := testca.New(t, td, t0)
	svid := ca.CreateX509SVID(taskA)
	c := send(t, svid, t0, "POST", "/tickets/7?x=a%20b", []byte(`{"title":"x"}`), nil)
	v, err := httpsig.VerifyRequest(c.msg, c.body, httpsig.VerifyOptions{Now: t0.Add(2 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Params.Alg != httpsig.AlgECDSAP256 || v.Params.Tag != "agentid" || v.Params.Nonce == "" ||
		v.Params.Created != t0.Unix() || v.Params.Expires != t0.Add(httpsig.DefaultLifetime).Unix() {
		t.Fatalf("params %+v", v.Params)
	}
	if !bytes.Equal(v.Chain[0].Raw, svid.Certificates[0].Raw) || v.Params.KeyID != httpsig.KeyID(svid.Certificates[0]) {
		t.Fatal("the chain or keyid is not the SVID's")
	}
	want := `"@method": POST` + "\n" + `"@target-uri": ` + c.msg.TargetURI + "\n"
	if !strings.HasPrefix(string(v.Base), want) || !strings.HasSuffix(c.msg.TargetURI, "/tickets/7?x=a%20b") {
		t.Fatalf("base:\n%s", v.Base)
	}
	// The evidence verifies offline with the bundle alone.
	p, err := httpsig.VerifyEvidence(v.Evidence(), ca.X509Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != taskA || p.Method != "POST" || p.TargetURI != c.msg.TargetURI || p.ContentDigest != httpsig.ContentDigest([]byte(`{"title":"x"}`)) {
		t.Fatalf("proven %+v", p)
	}
}

// TestVerifyRequestRefuses: each bad input is refused with its own reason.
func TestVerifyRequestRefuses(t *testing.T) {
	ca := testca.New(t, td, t0)
	svidA, svidB := ca.CreateX509SVID(taskA), ca.CreateX509SVID(taskB)
	body := []byte(`{"amount":10}`)
	good := func() captured { return send(t, svidA, t0, "POST", "/pay", body, nil) }
	for _, tc := range []struct {
		name   string
		make   func() captured
		reason string
	}{
		{"no signature", func() captured {
			c := good()
			c.msg.Header.Del("Signature")
			c.msg.Header.Del("Signature-Input")
			return c
		}, httpsig.ReasonMissing},
		{"garbled Signature-Input", func() captured {
			c := good()
			c.msg.Header.Set("Signature-Input", `agentid=("@method" "@target-uri";created=1`)
			return c
		}, httpsig.ReasonMalformed},
		{"garbled Signature", func() captured {
			c := good()
			c.msg.Header.Set("Signature", `agentid=:not base64!:`)
			return c
		}, httpsig.ReasonMalformed},
		{"only another application's signature", func() captured {
			c := good()
			c.msg.Header.Set("Signature-Input", `other=("@method");created=1;tag="web-bot-auth"`)
			c.msg.Header.Set("Signature", `other=:AAAA:`)
			return c
		}, httpsig.ReasonMissing},
		{"tagged input without its Signature", func() captured {
			c := good()
			c.msg.Header.Set("Signature", `other=:AAAA:`)
			return c
		}, httpsig.ReasonMalformed},
		{"two signatures tagged agentid", func() captured {
			c := good()
			in := c.msg.Header.Get("Signature-Input")
			c.msg.Header.Set("Signature-Input", in+", "+strings.Replace(in, "agentid=", "second=", 1))
			c.msg.Header.Set("Signature", c.msg.Header.Get("Signature")+", "+strings.Replace(c.msg.Header.Get("Signature"), "agentid=", "second=", 1))
			return c
		}, httpsig.ReasonMalformed},
		{"content-type not covered", func() captured {
			c := good()
			c.msg.Header.Set("Content-Type", "text/plain")
			return c
		}, httpsig.ReasonComponents},
		{"signed by another task's key", func() captured {
			// B signs, then the request claims A's certificate.
			c := send(t, svidB, t0, "POST", "/pay", body, nil)
			c.msg.Header.Set(httpsig.HeaderSVID, httpsig.EncodeChain(svidA.Certificates))
			return c
		}, httpsig.ReasonCertMismatch},
		{"signed by another key, keyid stripped", func() captured {
			c := send(t, svidB, t0, "POST", "/pay", body, nil)
			c.msg.Header.Set(httpsig.HeaderSVID, httpsig.EncodeChain(svidA.Certificates))
			in := c.msg.Header.Get("Signature-Input")
			i := strings.Index(in, ";keyid=")
			j := strings.Index(in, ";alg=")
			c.msg.Header.Set("Signature-Input", in[:i]+in[j:])
			return c
		}, httpsig.ReasonInvalid},
		{"stale created", func() captured { return send(t, svidA, t0.Add(-2*time.Minute), "POST", "/pay", body, nil) }, httpsig.ReasonStale},
		{"created in the future", func() captured { return send(t, svidA, t0.Add(2*time.Minute), "POST", "/pay", body, nil) }, httpsig.ReasonStale},
		{"body changed after signing", func() captured {
			return send(t, svidA, t0, "POST", "/pay", body, func(r *http.Request) {
				b := []byte(`{"amount":99}`)
				r.Body, r.ContentLength, r.GetBody = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
			})
		}, httpsig.ReasonDigest},
		{"digest changed with the body", func() captured {
			return send(t, svidA, t0, "POST", "/pay", body, func(r *http.Request) {
				b := []byte(`{"amount":99}`)
				r.Body, r.ContentLength, r.GetBody = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
				r.Header.Set("Content-Digest", httpsig.ContentDigest(b))
			})
		}, httpsig.ReasonInvalid},
		{"method changed", func() captured {
			return send(t, svidA, t0, "POST", "/pay", body, func(r *http.Request) { r.Method = "PUT" })
		}, httpsig.ReasonInvalid},
		{"path changed", func() captured {
			return send(t, svidA, t0, "POST", "/pay", body, func(r *http.Request) { r.URL.Path = "/refund" })
		}, httpsig.ReasonInvalid},
		{"content-digest not covered", func() captured {
			c := good()
			c.msg.Header.Set("Signature-Input", strings.Replace(c.msg.Header.Get("Signature-Input"), ` "content-digest"`, "", 1))
			return c
		}, httpsig.ReasonComponents},
		{"nonce not covered", func() captured {
			c := good()
			in := c.msg.Header.Get("Signature-Input")
			i := strings.Index(in, ";nonce=")
			j := strings.Index(in, ";keyid=")
			c.msg.Header.Set("Signature-Input", in[:i]+in[j:])
			return c
		}, httpsig.ReasonComponents},
		{"wrong algorithm", func() captured {
			c := good()
			c.msg.Header.Set("Signature-Input", strings.Replace(c.msg.Header.Get("Signature-Input"), `alg="ecdsa-p256-sha256"`, `alg="ed25519"`, 1))
			return c
		}, httpsig.ReasonAlgorithm},
		{"algorithm not allowed", func() captured { return good() }, httpsig.ReasonAlgorithm},
		{"garbled certificate header", func() captured {
			c := good()
			c.msg.Header.Set(httpsig.HeaderSVID, ":AAAA:")
			return c
		}, httpsig.ReasonMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.make()
			opts := httpsig.VerifyOptions{Now: t0}
			if tc.name == "algorithm not allowed" {
				opts.Algorithms = []string{httpsig.AlgEd25519}
			}
			_, err := httpsig.VerifyRequest(c.msg, c.body, opts)
			if got := httpsig.ReasonOf(err); got != tc.reason {
				t.Fatalf("got %v (reason %q), want %s", err, got, tc.reason)
			}
		})
	}
}

// TestVerifyRequestFindsItsSignatureByTag: the agentid signature is the
// one tagged agentid, whatever its label, next to another application's.
func TestVerifyRequestFindsItsSignatureByTag(t *testing.T) {
	ca := testca.New(t, td, t0)
	c := send(t, ca.CreateX509SVID(taskA), t0, "POST", "/pay", []byte("x"), nil)
	h := c.msg.Header
	h.Set("Signature-Input", `sig1=("@method");created=1;tag="web-bot-auth", `+strings.Replace(h.Get("Signature-Input"), "agentid=", "relabelled=", 1))
	h.Set("Signature", `sig1=:AAAA:, `+strings.Replace(h.Get("Signature"), "agentid=", "relabelled=", 1))
	v, err := httpsig.VerifyRequest(c.msg, c.body, httpsig.VerifyOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	if v.Signed.Label != "relabelled" {
		t.Fatalf("label %q", v.Signed.Label)
	}
}

func TestVerifyEvidenceRefuses(t *testing.T) {
	ca := testca.New(t, td, t0)
	svid := ca.CreateX509SVID(taskA)
	c := send(t, svid, t0, "POST", "/pay", []byte("x"), nil)
	v, err := httpsig.VerifyRequest(c.msg, c.body, httpsig.VerifyOptions{Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	other := testca.New(t, td, t0)
	for _, tc := range []struct {
		name   string
		edit   func(e *httpsig.Evidence)
		bundle *testca.CA
		reason string
	}{
		{"another bundle", func(e *httpsig.Evidence) {}, other, httpsig.ReasonUntrusted},
		{"method rewritten", func(e *httpsig.Evidence) { e.Base = strings.Replace(e.Base, "POST", "GET", 1) }, ca, httpsig.ReasonInvalid},
		{"digest rewritten", func(e *httpsig.Evidence) {
			e.Base = strings.Replace(e.Base, httpsig.ContentDigest([]byte("x")), httpsig.ContentDigest([]byte("y")), 1)
		}, ca, httpsig.ReasonInvalid},
		{"line dropped", func(e *httpsig.Evidence) { e.Base = e.Base[strings.Index(e.Base, "\n")+1:] }, ca, httpsig.ReasonMalformed},
		{"signature flipped", func(e *httpsig.Evidence) { e.Signature[3] ^= 1 }, ca, httpsig.ReasonInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := v.Evidence()
			e.Signature = bytes.Clone(e.Signature)
			tc.edit(&e)
			_, err := httpsig.VerifyEvidence(e, tc.bundle.X509Bundle())
			if got := httpsig.ReasonOf(err); got != tc.reason {
				t.Fatalf("got %v, want %s", err, tc.reason)
			}
		})
	}
}

// TestVerifyRequestWithTheTLSLeaf: given the certificate the peer
// authenticated with, the signer must be that certificate.
func TestVerifyRequestWithTheTLSLeaf(t *testing.T) {
	ca := testca.New(t, td, t0)
	a, b := ca.CreateX509SVID(taskA), ca.CreateX509SVID(taskB)
	c := send(t, a, t0, "POST", "/pay", []byte("x"), nil)
	if _, err := httpsig.VerifyRequest(c.msg, c.body, httpsig.VerifyOptions{Now: t0, Leaf: a.Certificates[0]}); err != nil {
		t.Fatal(err)
	}
	_, err := httpsig.VerifyRequest(c.msg, c.body, httpsig.VerifyOptions{Now: t0, Leaf: b.Certificates[0]})
	if httpsig.ReasonOf(err) != httpsig.ReasonCertMismatch {
		t.Fatalf("another TLS peer: %v", err)
	}
}

// TestContentDigestRepeatedMember: RFC 8941 keeps the last of a repeated
// dictionary key, so "sha-256=<decoy>, sha-256=<body>" checked against
// the body passes, while the signed field — what verify-receipt shows as
// the evidence — names a body that was never sent first (review 5). A
// repeated member is refused.
func TestContentDigestRepeatedMember(t *testing.T) {
	body := []byte(`{"amount":1}`)
	decoy := []byte(`{"amount":1000000}`)
	for _, vals := range [][]string{
		{httpsig.ContentDigest(decoy) + ", " + httpsig.ContentDigest(body)},
		{httpsig.ContentDigest(decoy), httpsig.ContentDigest(body)}, // two field lines
		{httpsig.ContentDigest(body) + ";a=\"x,y\", " + httpsig.ContentDigest(body)},
	} {
		if err := httpsig.CheckContentDigest(vals, body); err == nil {
			t.Errorf("Content-Digest %q: accepted with a repeated member", vals)
		}
	}
	if err := httpsig.CheckContentDigest([]string{httpsig.ContentDigest(body) + `, sha-512=:AAAA:;a="1,2"`}, body); err != nil {
		t.Fatalf("one sha-256 member beside another algorithm refused: %v", err)
	}
}
