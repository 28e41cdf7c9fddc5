package verifier_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
)

const authzenPolicy = `
rule "users-read" {
  effect = "allow"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["can_read"]
    }
  }
  condition = resource.id != "secret" && lookup(context, "deny", false) == false
}

rule "agents-read-for-their-principal" {
  effect = "allow"
  subject {
    type = "agent_task"
  }
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    authzen {
      names = ["can_read"]
    }
  }
  condition = resource.properties.owner == peer.principal
}
`

// recAudit reads back the records of a real audit log.
type recAudit struct {
	w    *audit.Writer
	path string
	recs []audit.Record
}

func (r *recAudit) load(t *testing.T) {
	t.Helper()
	if err := r.w.Flush(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.recs = r.recs[:0]
	if len(bytes.TrimSpace(data)) == 0 {
		return
	}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var rec audit.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		r.recs = append(r.recs, rec)
	}
}

type azEnv struct {
	ca     *testca.CA
	v      *verifier.Verifier
	az     *verifier.AuthZEN
	audit  *recAudit
	srv    *httptest.Server
	url    string // where post sends: srv, or its mTLS twin (useMTLS)
	client *http.Client
	jwt    string
	cert   string
}

func newAZEnv(t *testing.T) *azEnv {
	t.Helper()
	ca := testca.New(t, td, time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	pem, _ := testca.SVIDPEM(t, ca.CreateX509SVID(taskID, ext(t, c)))
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	e := &azEnv{ca: ca, audit: &recAudit{w: w, path: path}, jwt: ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()), cert: string(pem)}
	e.v = &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}}),
		Policy: loadPolicy(t, authzenPolicy),
		Audit:  w,
	}
	e.az = &verifier.AuthZEN{V: e.v, SubjectTypes: []string{"user"}, MaxBatch: 100}
	e.srv = httptest.NewServer(e.az.Handler())
	t.Cleanup(e.srv.Close)
	e.url, e.client = e.srv.URL, http.DefaultClient
	return e
}

// useMTLS makes e's requests go over SPIFFE mTLS, as a PEP in the check
// API's allowed_callers does: its callers are authenticated.
func (e *azEnv) useMTLS(t *testing.T) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(e.ca.CreateX509SVID(serverID), e.ca.X509Bundle(), tlsconfig.AuthorizeAny()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.az.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	pep := e.ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/envoy"))
	tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(pep, e.ca.X509Bundle(), tlsconfig.AuthorizeID(serverID))}
	t.Cleanup(tr.CloseIdleConnections)
	e.url, e.client = "https://"+l.Addr().String(), &http.Client{Transport: tr}
}

func (e *azEnv) post(t *testing.T, path, body string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	e.audit.load(t)
	return resp.StatusCode, b.String(), resp.Header
}

func decision(t *testing.T, body string) (bool, map[string]any) {
	t.Helper()
	var d struct {
		Decision *bool          `json:"decision"`
		Context  map[string]any `json:"context"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || d.Decision == nil {
		t.Fatalf("not a decision: %q (%v)", body, err)
	}
	return *d.Decision, d.Context
}

func agentReq(props string, id string) string {
	return `{"subject":{"type":"agent_task","id":"` + id + `","properties":` + props + `},"action":{"name":"can_read"},"resource":{"type":"doc","id":"d1","properties":{"owner":"spiffe://example.org/user/alice"}}}`
}

func TestAuthZENUserSubjects(t *testing.T) {
	e := newAZEnv(t)
	st, body, h := e.post(t, "/access/v1/evaluation", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read"},"resource":{"type":"doc","id":"d1"}}`, "X-Request-ID", "req-1")
	if ok, ctx := decision(t, body); st != 200 || !ok || ctx != nil || h.Get("X-Request-ID") != "req-1" {
		t.Fatalf("user read: %d %s %v", st, body, h)
	}
	// Unknown fields are ignored (the spec's MUST), the context is read.
	if _, body, _ := e.post(t, "/access/v1/evaluation", `{"subject":{"type":"user","id":"alice","extra":1},"action":{"name":"can_read"},"resource":{"type":"doc","id":"d1"},"context":{"deny":true},"later":"x"}`); allowed(t, body) {
		t.Fatal("context deny")
	}
	// A policy deny carries no context.
	if _, body, _ := e.post(t, "/access/v1/evaluation", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read"},"resource":{"type":"doc","id":"secret"}}`); body != "{\"decision\":false}\n" {
		t.Fatalf("policy deny: %q", body)
	}
	// An asserted user that names an agent's SPIFFE ID is still a user.
	if _, body, _ := e.post(t, "/access/v1/evaluation", `{"subject":{"type":"user","id":"`+taskID.String()+`"},"action":{"name":"can_read"},"resource":{"type":"doc","id":"d1","properties":{"owner":"spiffe://example.org/user/alice"}}}`); !allowed(t, body) {
		t.Fatal("user")
	}
	last := e.audit.recs[len(e.audit.recs)-1]
	if last.Frontend != "authzen" || last.Peer != "" || last.Subject == nil || last.Subject.Type != "user" || last.Resource == nil || last.Resource.ID != "d1" || last.Action.Kind != "authzen" || last.Action.Name != "can_read" {
		t.Fatalf("audit record %+v", last)
	}
}

func allowed(t *testing.T, body string) bool {
	ok, _ := decision(t, body)
	return ok
}

// Agent subjects are proven: the credential in the subject's properties is
// authenticated exactly as the check API does (the caller a PEP over mTLS:
// see TestAuthZENCertificateNeedsAuthenticatedCaller).
func TestAuthZENAgentSubjects(t *testing.T) {
	e := newAZEnv(t)
	e.useMTLS(t)
	for _, props := range []string{`{"jwt":"` + e.jwt + `"}`, mustJSON(map[string]string{"certificate": e.cert})} {
		_, body, _ := e.post(t, "/access/v1/evaluation", agentReq(props, taskID.String()))
		if ok, ctx := decision(t, body); !ok {
			t.Fatalf("agent with %s: %s %v", props[:12], body, ctx)
		}
	}
	rec := e.audit.recs[len(e.audit.recs)-1]
	if rec.Peer != taskID.String() || len(rec.Claims) == 0 || rec.Subject != nil {
		t.Fatalf("audit of an agent subject: %+v", rec)
	}

	forger := testca.New(t, td, time.Now())
	partner := testca.New(t, spiffeid.RequireTrustDomainFromString("partner.example"), time.Now())
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	forgedPEM, _ := testca.SVIDPEM(t, forger.CreateX509SVID(taskID, ext(t, c)))
	past := time.Now().Add(-2 * time.Hour)
	expiredPEM, _ := testca.SVIDPEM(t, e.ca.CreateX509SVID(taskID, ext(t, c), testca.WithLifetime(past, past.Add(time.Hour))))
	partnerID := spiffeid.RequireFromString("spiffe://partner.example/agent/researcher/task/T-42")
	pc := c
	pc.Principal = "spiffe://partner.example/user/alice"
	pc.Chain = nil
	foreignPEM, _ := testca.SVIDPEM(t, partner.CreateX509SVID(partnerID, ext(t, pc)))
	e.v.Auth = verifier.NewAuthenticator(verifier.Config{
		X509Bundles:  x509bundle.NewSet(e.ca.X509Bundle(), partner.X509Bundle()),
		JWTBundles:   jwtbundle.NewSet(e.ca.JWTBundle()),
		Audiences:    []string{"kb"},
		TrustDomains: []spiffeid.TrustDomain{td},
	})
	plainPEM, _ := testca.SVIDPEM(t, e.ca.CreateX509SVID(plainID))
	tests := []struct {
		name, props, id, code string
	}{
		{"forged certificate", mustJSON(map[string]string{"certificate": string(forgedPEM)}), taskID.String(), verifier.ReasonUntrusted},
		{"forged JWT", `{"jwt":"` + forger.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()) + `"}`, taskID.String(), verifier.ReasonUntrusted},
		{"expired certificate", mustJSON(map[string]string{"certificate": string(expiredPEM)}), taskID.String(), verifier.ReasonExpired},
		{"foreign trust domain", mustJSON(map[string]string{"certificate": string(foreignPEM)}), partnerID.String(), verifier.ReasonForeignDomain},
		{"JWT for another audience", `{"jwt":"` + e.ca.CreateJWTSVID(taskID, []string{"other"}, c.JWTClaims()) + `"}`, taskID.String(), verifier.ReasonWrongAudience},
		{"no credential", `{}`, taskID.String(), verifier.ReasonNoCredential},
		{"garbage", `{"jwt":"garbage"}`, taskID.String(), verifier.ReasonBadCredential},
		{"id is not the credential's", `{"jwt":"` + e.jwt + `"}`, "spiffe://example.org/agent/admin/task/T-1", verifier.ReasonSubjectMismatch},
		{"plain SVID as agent_task", mustJSON(map[string]string{"certificate": string(plainPEM)}), plainID.String(), verifier.ReasonSubjectMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := e.post(t, "/access/v1/evaluation", agentReq(tc.props, tc.id))
			ok, ctx := decision(t, body)
			if st != 200 || ok || ctx == nil || ctx["code"] != tc.code || ctx["reason"] == "" {
				t.Fatalf("%d %s, want a denial with code %s", st, body, tc.code)
			}
			rec := e.audit.recs[len(e.audit.recs)-1]
			if rec.Decision != "deny" || rec.Frontend != "authzen" {
				t.Fatalf("audit %+v", rec)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAuthZENBadRequests(t *testing.T) {
	e := newAZEnv(t)
	item := `{"resource":{"type":"doc","id":"d"}}`
	big := `{"subject":{"type":"user","id":"a"},"action":{"name":"can_read"},"evaluations":[` + strings.TrimSuffix(strings.Repeat(item+",", 10000), ",") + `]}`
	tests := []struct {
		name, path, body, ct, want string
	}{
		{"malformed JSON", "/access/v1/evaluation", `{"subject":`, "", "malformed JSON"},
		{"not an object", "/access/v1/evaluation", `[1]`, "", "must be a JSON object"},
		{"duplicate key", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a","id":"b"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "malformed JSON"},
		{"case variants of a key", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"Subject":{"type":"user","id":"b"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "malformed JSON"},
		{"missing subject", "/access/v1/evaluation", `{"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "subject is required"},
		{"missing subject id", "/access/v1/evaluation", `{"subject":{"type":"user"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "subject.id is required"},
		{"missing action name", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"action":{},"resource":{"type":"d","id":"1"}}`, "", "action.name is required"},
		{"missing resource", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"action":{"name":"x"}}`, "", "resource is required"},
		{"id not a string", "/access/v1/evaluation", `{"subject":{"type":"user","id":5},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "subject.id must be a non-empty string"},
		{"unknown subject type", "/access/v1/evaluation", `{"subject":{"type":"robot","id":"r"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", `subject.type "robot" is not a subject type this PDP accepts: agent_task (proven by its credential), user`},
		{"workload cannot be asserted", "/access/v1/evaluation", `{"subject":{"type":"workload","id":"spiffe://example.org/x"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", `subject.type "workload" is not a subject type`},
		{"two credentials", "/access/v1/evaluation", agentReq(`{"jwt":"`+e.jwt+`","certificate":"x"}`, taskID.String()), "", "give one of"},
		{"context not an object", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"action":{"name":"x"},"resource":{"type":"d","id":"1"},"context":[]}`, "", "context: must be a JSON object"},
		{"oversize", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a","properties":{"x":"` + strings.Repeat("a", verifier.MaxAuthZENBody) + `"}},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "over 1048576 bytes"},
		{"long number in context", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"action":{"name":"x"},"resource":{"type":"d","id":"1"},"context":{"n":` + strings.Repeat("7", 900<<10) + `}}`, "", "characters, more than 400"},
		{"number beyond float64 in properties", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a","properties":{"n":1e999999999}},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "exponent beyond"},
		{"long id", "/access/v1/evaluation", `{"subject":{"type":"user","id":"` + strings.Repeat("a", 3000) + `"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "", "subject.id has 3000 bytes, over the limit of 2048"},
		{"wrong content type", "/access/v1/evaluation", `{}`, "text/plain", "send application/json"},
		{"charset other than UTF-8", "/access/v1/evaluation", `{"subject":{"type":"user","id":"a"},"action":{"name":"x"},"resource":{"type":"d","id":"1"}}`, "application/json; charset=utf-16", `charset "utf-16" is refused`},
		{"batch item without subject", "/access/v1/evaluations", `{"evaluations":[{"action":{"name":"x"},"resource":{"type":"d","id":"1"}}]}`, "", "evaluations[0].subject is required"},
		{"batch of 10,000", "/access/v1/evaluations", big, "", "evaluations has 10000 items; this PDP decides at most 100 per request"},
		{"unknown semantic", "/access/v1/evaluations", `{"subject":{"type":"user","id":"a"},"action":{"name":"x"},"options":{"evaluations_semantic":"most"},"evaluations":[` + item + `]}`, "", "options.evaluations_semantic must be one of"},
	}
	before := len(e.audit.recs)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.ct
			if ct == "" {
				ct = "application/json"
			}
			st, body, h := e.post(t, tc.path, tc.body, "Content-Type", ct, "X-Request-ID", "r-"+tc.name)
			if st != 400 || !strings.Contains(body, tc.want) || h.Get("X-Request-ID") != "r-"+tc.name {
				t.Fatalf("%d %q (request id %q), want 400 with %q", st, body, h.Get("X-Request-ID"), tc.want)
			}
		})
	}
	if len(e.audit.recs) != before {
		t.Fatalf("a refused request was decided: %d records", len(e.audit.recs)-before)
	}
}

func TestAuthZENBatch(t *testing.T) {
	e := newAZEnv(t)
	items := `[{"resource":{"type":"doc","id":"a"}},{"resource":{"type":"doc","id":"secret"}},{"resource":{"type":"doc","id":"c"}}]`
	for _, tc := range []struct{ semantic, want string }{
		{"", `{"evaluations":[{"decision":true},{"decision":false},{"decision":true}]}`},
		{"execute_all", `{"evaluations":[{"decision":true},{"decision":false},{"decision":true}]}`},
		{"deny_on_first_deny", `{"evaluations":[{"decision":true},{"decision":false}]}`},
		{"permit_on_first_permit", `{"evaluations":[{"decision":true}]}`},
	} {
		opts := ""
		if tc.semantic != "" {
			opts = `"options":{"evaluations_semantic":"` + tc.semantic + `"},`
		}
		n := len(e.audit.recs)
		_, body, _ := e.post(t, "/access/v1/evaluations", `{"subject":{"type":"user","id":"alice"},"action":{"name":"can_read"},`+opts+`"evaluations":`+items+`}`)
		if strings.TrimSpace(body) != tc.want {
			t.Errorf("%s: %s, want %s", tc.semantic, body, tc.want)
		}
		if got, want := len(e.audit.recs)-n, strings.Count(tc.want, "decision"); got != want {
			t.Errorf("%s: %d decisions audited, want %d", tc.semantic, got, want)
		}
	}
	// Items override the defaults; mixed subjects; an agent item refused
	// before the policy says why.
	body := fmt.Sprintf(`{"action":{"name":"can_read"},"resource":{"type":"doc","id":"d1","properties":{"owner":"spiffe://example.org/user/alice"}},"evaluations":[
	  {"subject":{"type":"user","id":"alice"}},
	  {"subject":{"type":"agent_task","id":"%s","properties":{"jwt":"%s"}}},
	  {"subject":{"type":"agent_task","id":"%s","properties":{"jwt":"garbage"}}},
	  {"subject":{"type":"user","id":"alice"},"action":{"name":"can_write"}}]}`, taskID, e.jwt, taskID)
	_, out, _ := e.post(t, "/access/v1/evaluations", body)
	var resp struct {
		Evaluations []struct {
			Decision bool           `json:"decision"`
			Context  map[string]any `json:"context"`
		} `json:"evaluations"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || len(resp.Evaluations) != 4 {
		t.Fatalf("%s %v", out, err)
	}
	ev := resp.Evaluations
	if !ev[0].Decision || !ev[1].Decision || ev[2].Decision || ev[2].Context["code"] != verifier.ReasonBadCredential || ev[3].Decision || ev[3].Context != nil {
		t.Fatalf("mixed batch: %s", out)
	}
	// An empty batch is a single evaluation.
	if _, out, _ := e.post(t, "/access/v1/evaluations", `{"subject":{"type":"user","id":"a"},"action":{"name":"can_read"},"resource":{"type":"doc","id":"d"},"evaluations":[]}`); out != "{\"decision\":true}\n" {
		t.Fatalf("empty batch: %q", out)
	}
}

func TestAuthZENDiscovery(t *testing.T) {
	e := newAZEnv(t)
	resp, err := http.Get(e.srv.URL + "/.well-known/authzen-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]string
	json.NewDecoder(resp.Body).Decode(&doc)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || doc["policy_decision_point"] != e.srv.URL ||
		doc["access_evaluation_endpoint"] != e.srv.URL+"/access/v1/evaluation" || doc["access_evaluations_endpoint"] != e.srv.URL+"/access/v1/evaluations" {
		t.Fatalf("%d %v", resp.StatusCode, doc)
	}
	if r, _ := http.Get(e.srv.URL + "/access/v1/evaluation"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET evaluation: %d", r.StatusCode)
	}
}

// TestAuthZENCertificateNeedsAuthenticatedCaller: a task's X.509-SVID is
// public (every TLS handshake and Agentid-Svid header shows it), so an
// agent_task subject's "certificate" from a caller that did not
// authenticate must not make the caller that task (review 5): refused
// with the reason and audited, while the audience-bound "jwt" is still
// accepted; CertificatesFromAnyCaller restores the old behaviour for
// deployments that keep the API to a trusted PEP on loopback.
func TestAuthZENCertificateNeedsAuthenticatedCaller(t *testing.T) {
	e := newAZEnv(t)
	// what an observer has: the certificate from an Agentid-Svid header
	blk, _ := pem.Decode([]byte(e.cert))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := httpsig.DecodeChain([]string{httpsig.EncodeChain([]*x509.Certificate{leaf})})
	if err != nil {
		t.Fatal(err)
	}
	observed := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: chain[0].Raw}))
	_, body, _ := e.post(t, "/access/v1/evaluation", agentReq(mustJSON(map[string]string{"certificate": observed}), taskID.String()))
	if ok, ctx := decision(t, body); ok || ctx == nil || ctx["code"] != verifier.ReasonBadCredential || !strings.Contains(fmt.Sprint(ctx["reason"]), "public") {
		t.Fatalf("a caller holding only the task's public certificate: %s", body)
	}
	if rec := e.audit.recs[len(e.audit.recs)-1]; rec.Decision != "deny" || rec.Frontend != "authzen" {
		t.Fatalf("audit %+v", rec)
	}
	if _, body, _ := e.post(t, "/access/v1/evaluation", agentReq(`{"jwt":"`+e.jwt+`"}`, taskID.String())); !decided(t, body) {
		t.Fatalf("the JWT-SVID from an unauthenticated caller: %s", body)
	}
	e.az.CertificatesFromAnyCaller = true
	if _, body, _ := e.post(t, "/access/v1/evaluation", agentReq(mustJSON(map[string]string{"certificate": e.cert}), taskID.String())); !decided(t, body) {
		t.Fatalf("CertificatesFromAnyCaller: %s", body)
	}
}

func decided(t *testing.T, body string) bool {
	t.Helper()
	ok, _ := decision(t, body)
	return ok
}
