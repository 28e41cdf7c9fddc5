package verifier_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
)

const signaturePolicy = `
rule "pay" {
  effect            = "allow"
  require_signature = true
  action {
    http {
      methods = ["POST"]
      paths   = ["/pay"]
    }
  }
}

rule "read" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`

var taskB = spiffeid.RequireFromString("spiffe://example.org/agent/other/task/T-7")

// sigEnv is a verifier with signatures on, behind a real mTLS proxy.
type sigEnv struct {
	ca           *testca.CA
	v            *verifier.Verifier
	now          time.Time
	svidA, svidB *x509svid.SVID
	logPath      string
	w            *audit.Writer
	base         string // the proxy's URL
	proxyID      spiffeid.ID
	upstream     chan []byte // bodies the upstream received
}

func newSigEnv(t *testing.T) *sigEnv {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	ca := testca.New(t, td, now)
	e := &sigEnv{ca: ca, now: now, proxyID: spiffeid.RequireFromString("spiffe://example.org/kb"), upstream: make(chan []byte, 16)}
	c := claimsUntil(now.Add(time.Hour))
	e.svidA = ca.CreateX509SVID(taskID, ext(t, c))
	cb := c
	cb.Agent, cb.Task = "other", "T-7"
	e.svidB = ca.CreateX509SVID(taskB, ext(t, cb))
	e.logPath = filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(e.logPath, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e.w = w
	e.v = &verifier.Verifier{
		Auth:       verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}, Clock: func() time.Time { return now }}),
		Policy:     loadPolicy(t, signaturePolicy),
		Audit:      w,
		Signatures: &verifier.Signatures{Window: time.Minute},
		Clock:      func() time.Time { return now },
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		e.upstream <- b
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(ca.CreateX509SVID(e.proxyID), ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: verifier.NewProxy(e.v, u, nil), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	e.base = "https://" + l.Addr().String()
	return e
}

// client is an mTLS client as tls (its TLS identity) whose requests are
// signed by signer at signedAt (nil: unsigned); mutate, when set, changes
// each request after signing.
func (e *sigEnv) client(tlsSVID, signer *x509svid.SVID, signedAt time.Time, mutate func(*http.Request)) *http.Client {
	var rt http.RoundTripper = &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(tlsSVID, e.ca.X509Bundle(), tlsconfig.AuthorizeID(e.proxyID))}
	if mutate != nil {
		next := rt
		rt = roundTripperFunc(func(r *http.Request) (*http.Response, error) { mutate(r); return next.RoundTrip(r) })
	}
	if signer != nil {
		rt = &httpsig.Transport{Base: rt, Source: signer, Clock: func() time.Time { return signedAt }}
	}
	return &http.Client{Transport: rt, Timeout: 10 * time.Second}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (e *sigEnv) do(t *testing.T, c *http.Client, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.base+path, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason)
}

// records reads the audit log's decision records.
func (e *sigEnv) records(t *testing.T) []audit.Record {
	t.Helper()
	if err := e.w.Flush(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == audit.TypeDecision {
			out = append(out, r)
		}
	}
	return out
}

func editInput(r *http.Request, from, to string) {
	r.Header.Set("Signature-Input", strings.Replace(r.Header.Get("Signature-Input"), from, to, 1))
}

// TestSignedRequestsThroughTheProxy: a request signed with the task's own
// SVID key is allowed and its signature (base, signature, certificate)
// goes into the audit record, where it verifies with the bundle alone;
// each bad input is refused with its own reason, and audited.
func TestSignedRequestsThroughTheProxy(t *testing.T) {
	e := newSigEnv(t)
	good := e.client(e.svidA, e.svidA, e.now, nil)
	if code, reason := e.do(t, good, "POST", "/pay", `{"amount":10}`); code != 200 {
		t.Fatalf("signed request: %d %s", code, reason)
	}
	if got := <-e.upstream; string(got) != `{"amount":10}` {
		t.Fatalf("upstream body %q", got)
	}
	if code, reason := e.do(t, e.client(e.svidA, nil, e.now, nil), "GET", "/kb/doc", ""); code != 200 {
		t.Fatalf("unsigned read (no rule requires a signature): %d %s", code, reason)
	}
	<-e.upstream
	recs := e.records(t)
	sig := recs[0].AgentSig
	if sig == nil || sig.Base == "" || recs[0].Decision != "allow" {
		t.Fatalf("the allowed record has no signature: %+v", recs[0])
	}
	p, err := httpsig.VerifyEvidence(httpsig.Evidence{Label: sig.Label, Base: sig.Base, Signature: sig.Sig}, e.ca.X509Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != taskID || p.Method != "POST" || p.TargetURI != e.base+"/pay" || p.ContentDigest != httpsig.ContentDigest([]byte(`{"amount":10}`)) {
		t.Fatalf("proven %+v", p)
	}
	if recs[1].AgentSig != nil {
		t.Fatalf("an unsigned request recorded a signature: %+v", recs[1].AgentSig)
	}

	// A replay: the exact bytes of a signed request, sent twice.
	var saved *http.Request
	var savedBody []byte
	capture := e.client(e.svidA, e.svidA, e.now, func(r *http.Request) {
		savedBody, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(savedBody))
		saved = r.Clone(context.Background())
	})
	if code, reason := e.do(t, capture, "POST", "/pay", `{"amount":5}`); code != 200 {
		t.Fatalf("%d %s", code, reason)
	}
	<-e.upstream
	replay := e.client(e.svidA, nil, e.now, func(r *http.Request) {
		r.Header = saved.Header.Clone()
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(savedBody)), int64(len(savedBody))
	})

	bodyChanged := func(r *http.Request) {
		b := []byte(`{"amount":9999}`)
		r.Body, r.ContentLength, r.GetBody = io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		method string
		path   string
		reason string
	}{
		{"unsigned where the rule requires it", e.client(e.svidA, nil, e.now, nil), "POST", "/pay", httpsig.ReasonMissing},
		{"garbled Signature-Input", e.client(e.svidA, e.svidA, e.now, func(r *http.Request) { r.Header.Set("Signature-Input", `agentid=("@method"`) }), "POST", "/pay", httpsig.ReasonMalformed},
		{"garbled Signature", e.client(e.svidA, e.svidA, e.now, func(r *http.Request) { r.Header.Set("Signature", `agentid=?1`) }), "POST", "/pay", httpsig.ReasonMalformed},
		{"another task's key and certificate", e.client(e.svidA, e.svidB, e.now, nil), "POST", "/pay", httpsig.ReasonCertMismatch},
		{"another task's key under this task's certificate", e.client(e.svidA, e.svidB, e.now, func(r *http.Request) {
			r.Header.Set(httpsig.HeaderSVID, httpsig.EncodeChain(e.svidA.Certificates))
			in := r.Header.Get("Signature-Input")
			i, j := strings.Index(in, ";keyid="), strings.Index(in, ";alg=")
			r.Header.Set("Signature-Input", in[:i]+in[j:])
		}), "POST", "/pay", httpsig.ReasonInvalid},
		{"stale created", e.client(e.svidA, e.svidA, e.now.Add(-5*time.Minute), nil), "POST", "/pay", httpsig.ReasonStale},
		{"replayed nonce", replay, "POST", "/pay", httpsig.ReasonReplayed},
		{"body changed after signing", e.client(e.svidA, e.svidA, e.now, bodyChanged), "POST", "/pay", httpsig.ReasonDigest},
		{"content-digest not covered", e.client(e.svidA, e.svidA, e.now, func(r *http.Request) { editInput(r, ` "content-digest"`, "") }), "POST", "/pay", httpsig.ReasonComponents},
		{"@target-uri not covered", e.client(e.svidA, e.svidA, e.now, func(r *http.Request) { editInput(r, ` "@target-uri"`, "") }), "POST", "/pay", httpsig.ReasonComponents},
		{"wrong algorithm", e.client(e.svidA, e.svidA, e.now, func(r *http.Request) { editInput(r, `alg="ecdsa-p256-sha256"`, `alg="rsa-pss-sha512"`) }), "POST", "/pay", httpsig.ReasonAlgorithm},
		{"a bad signature on a request that needs none", e.client(e.svidA, e.svidA, e.now, bodyChanged), "GET", "/kb/doc", httpsig.ReasonDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := e.do(t, tc.client, tc.method, tc.path, `{"amount":1}`)
			if code != http.StatusUnauthorized || !strings.Contains(reason, tc.reason+":") {
				t.Fatalf("got %d %q, want 401 %s", code, reason, tc.reason)
			}
			recs := e.records(t)
			last := recs[len(recs)-1]
			if last.Decision != "deny" || !strings.Contains(last.Reason, tc.reason) || last.Peer != taskID.String() || last.Action == nil || last.Action.Path != tc.path {
				t.Fatalf("audit record %+v", last)
			}
			if tc.reason != httpsig.ReasonMissing && (last.AgentSig == nil || last.AgentSig.Input == "") {
				t.Fatalf("the refused signature is not in the audit record: %+v", last.AgentSig)
			}
		})
	}
	select {
	case b := <-e.upstream:
		t.Fatalf("a refused request reached the upstream: %q", b)
	default:
	}
}

// TestSignaturesRequiredGlobally: with Signatures.Require every request
// needs one, whatever the rule; a front-end that cannot pass the request
// (the gRPC interceptors, the check API) refuses rather than skip it.
func TestSignaturesRequiredGlobally(t *testing.T) {
	e := newSigEnv(t)
	e.v.Signatures.Require = true
	if code, reason := e.do(t, e.client(e.svidA, nil, e.now, nil), "GET", "/kb/doc", ""); code != 401 || !strings.Contains(reason, httpsig.ReasonMissing) {
		t.Fatalf("unsigned: %d %s", code, reason)
	}
	if code, reason := e.do(t, e.client(e.svidA, e.svidA, e.now, nil), "GET", "/kb/doc", ""); code != 200 {
		t.Fatalf("signed: %d %s", code, reason)
	}
	<-e.upstream
	r := e.v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendGRPC,
		Credential: verifier.Credential{Kind: verifier.CredentialX509, Chain: e.svidA.Certificates},
		Action:     verifier.Action{Kind: "grpc", Method: "/kb.v1.KB/Get"}})
	if r.Allowed() || r.Code != httpsig.ReasonUnverifiable {
		t.Fatalf("gRPC with signatures required: %v %s", r.Outcome, r.Code)
	}
}

// TestSignedJWTVariant: a JWT-SVID says who; the signature, made with the
// X.509-SVID key of the same task, covers the Authorization field. A
// certificate of another task, or one outside the bundle, is refused.
func TestSignedJWTVariant(t *testing.T) {
	e := newSigEnv(t)
	c := claimsUntil(e.now.Add(time.Hour))
	jwt := e.ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims())
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	foreign := testca.New(t, td, e.now).CreateX509SVID(taskID, ext(t, c))
	for _, tc := range []struct {
		name   string
		signer *x509svid.SVID
		want   int
		reason string
	}{
		{"same task", e.svidA, 200, ""},
		{"another task's certificate", e.svidB, 401, httpsig.ReasonCertMismatch},
		{"a certificate outside the bundle", foreign, 401, httpsig.ReasonUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served *http.Request
			tr := &httpsig.Transport{Source: tc.signer, Clock: func() time.Time { return e.now },
				Bearer: func(context.Context, *http.Request) (string, error) { return jwt, nil },
				Base: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
					served = httptest.NewRequest(r.Method, r.URL.String(), r.Body)
					served.Header = r.Header
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, served)
					return rec.Result(), nil
				})}
			req, _ := http.NewRequest("POST", "http://example.com/pay", strings.NewReader("x"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want || !strings.Contains(resp.Header.Get(verifier.HeaderDenyReason), tc.reason) {
				t.Fatalf("%d %q, want %d %s", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason), tc.want, tc.reason)
			}
		})
	}
}

// TestSignedExtAuthz: Envoy passes the body (with_request_body) and the
// peer's certificate; the signature is checked against both. Without the
// body, a signed request is refused as unverifiable; a certificate header
// that is not the TLS peer's is refused.
func TestSignedExtAuthz(t *testing.T) {
	e := newSigEnv(t)
	sign := func(signer *x509svid.SVID, body string) map[string]string {
		m := &httpsig.Message{Method: "POST", TargetURI: "https://kb.internal/pay", Header: http.Header{}}
		s := httpsig.RequestSigner{Chain: signer.Certificates, Key: signer.PrivateKey}
		if _, err := s.Sign(m, []byte(body), e.now); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{":authority": "kb.internal", "content-length": "2"}
		for k, v := range m.Header {
			out[strings.ToLower(k)] = v[0]
		}
		return out
	}
	pemA, _ := testca.SVIDPEM(t, e.svidA)
	cert := url.PathEscape(string(pemA))
	ea := &verifier.ExtAuthz{V: e.v}
	check := func(headers map[string]string, body []byte) (code.Code, string) {
		req := checkReq(cert, "POST", "/pay", headers, "")
		req.Attributes.Request.Http.Host, req.Attributes.Request.Http.Scheme, req.Attributes.Request.Http.RawBody = "kb.internal", "https", body
		resp, err := ea.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return code.Code(resp.GetStatus().GetCode()), resp.GetStatus().GetMessage()
	}
	var _ = authv3.CheckRequest{}
	if c, msg := check(sign(e.svidA, "{}"), []byte("{}")); c != code.Code_OK {
		t.Fatalf("signed, body passed: %v %s", c, msg)
	}
	if c, msg := check(sign(e.svidA, "{}"), nil); c != code.Code_UNAUTHENTICATED || !strings.Contains(msg, httpsig.ReasonUnverifiable) {
		t.Fatalf("signed, no body: %v %s", c, msg)
	}
	if c, msg := check(sign(e.svidB, "{}"), []byte("{}")); c != code.Code_UNAUTHENTICATED || !strings.Contains(msg, httpsig.ReasonCertMismatch) {
		t.Fatalf("another task's certificate header: %v %s", c, msg)
	}
	if c, msg := check(sign(e.svidA, "{}"), []byte("{{")); c != code.Code_UNAUTHENTICATED || !strings.Contains(msg, httpsig.ReasonDigest) {
		t.Fatalf("body changed: %v %s", c, msg)
	}
}

// TestSignedBodyRecorded: with RecordBody the verified request's body goes
// into the audit record next to its signature (within MaxRecordedBody);
// without it, only the digest in the signature base.
func TestSignedBodyRecorded(t *testing.T) {
	e := newSigEnv(t)
	e.v.Signatures.RecordBody, e.v.Signatures.MaxRecordedBody = true, 16
	c := e.client(e.svidA, e.svidA, e.now, nil)
	for _, body := range []string{`{"amount":10}`, `{"amount":10000000}`} {
		if code, reason := e.do(t, c, "POST", "/pay", body); code != 200 {
			t.Fatalf("%d %s", code, reason)
		}
		<-e.upstream
	}
	recs := e.records(t)
	if got := string(recs[0].AgentSig.Body); got != `{"amount":10}` {
		t.Fatalf("recorded body %q", got)
	}
	if recs[1].AgentSig.Body != nil || recs[1].AgentSig.Base == "" {
		t.Fatalf("a body over MaxRecordedBody was recorded: %+v", recs[1].AgentSig)
	}
}

// TestOtherApplicationsSignaturesIgnored: a signature with another tag
// (another application's RFC 9421 signature) is not agentid's: it neither
// refuses a request that needs no agent signature nor satisfies one that
// does.
func TestOtherApplicationsSignaturesIgnored(t *testing.T) {
	e := newSigEnv(t)
	other := e.client(e.svidA, nil, e.now, func(r *http.Request) {
		r.Header.Set("Signature-Input", `sig1=("@method" "@authority");created=1;keyid="bot";tag="web-bot-auth"`)
		r.Header.Set("Signature", `sig1=:AAAA:`)
	})
	if code, reason := e.do(t, other, "GET", "/kb/doc", ""); code != 200 {
		t.Fatalf("no rule requires an agent signature: %d %s", code, reason)
	}
	<-e.upstream
	if code, reason := e.do(t, other, "POST", "/pay", "{}"); code != 401 || !strings.Contains(reason, httpsig.ReasonMissing) {
		t.Fatalf("require_signature: %d %s", code, reason)
	}
}

// TestSignedOverHTTP2: the target URI is rebuilt alike from an HTTP/2
// request (:authority, :path), through the middleware on an h2 server.
func TestSignedOverHTTP2(t *testing.T) {
	e := newSigEnv(t)
	cfg := verifier.ServerTLSConfig(e.ca.CreateX509SVID(e.proxyID), e.ca.X509Bundle())
	cfg.NextProtos = []string{"h2", "http/1.1"}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var proto string
	srv := &http.Server{Handler: e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { proto = r.Proto })),
		ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(e.svidA, e.ca.X509Bundle(), tlsconfig.AuthorizeID(e.proxyID)), ForceAttemptHTTP2: true}
	c := &http.Client{Transport: &httpsig.Transport{Base: tr, Source: e.svidA, Clock: func() time.Time { return e.now }}, Timeout: 10 * time.Second}
	resp, err := c.Post("https://"+l.Addr().String()+"/pay?x=1", "application/json", strings.NewReader(`{"amount":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || proto != "HTTP/2.0" {
		t.Fatalf("%s: %d %s", proto, resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
	}
}
