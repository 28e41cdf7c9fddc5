package verifier_test

// Review 11's findings on the credential → peer → liveness stages.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestAttackTaskIDWithoutClaims: an SVID with a task's SPIFFE ID but no
// agentid claims was a plain workload to the verifier, so the liveness
// hook (which checks tasks) let it through while the task was revoked,
// under a policy matching the ID. A task ID without claims is now refused
// (invalid_claims): it also makes a claims-OID mismatch between the
// composer and the verifier fail loudly. Other IDs need no claims.
func TestAttackTaskIDWithoutClaims(t *testing.T) {
	wall := time.Now()
	ca := testca.New(t, td, wall)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	if err := view.Update(wall.Add(-time.Minute), []string{}); err != nil { // T-42 is not live
		t.Fatal(err)
	}
	v := &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"},
			TrustDomains: []spiffeid.TrustDomain{td}}),
		Policy: loadPolicy(t, `
rule "r" {
  effect = "allow"
  peer {
    spiffe_id = ["spiffe://example.org/agent/researcher/task/*", "spiffe://example.org/web"]
  }
  action {
    http {
      paths = ["/kb/**"]
    }
  }
}
`),
		Liveness: view.Check,
	}
	decide := func(c verifier.Credential) verifier.Result {
		return v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendHTTP, Credential: c,
			Action: verifier.Action{Kind: "http", Method: "GET", Path: "/kb/x"}})
	}
	for name, c := range map[string]verifier.Credential{
		"x509": {Kind: verifier.CredentialX509, Chain: ca.CreateX509SVID(taskID).Certificates},
		"jwt":  {Kind: verifier.CredentialJWT, Value: ca.CreateJWTSVID(taskID, []string{"kb"}, nil)},
	} {
		if r := decide(c); r.Allowed() || r.Code != verifier.ReasonInvalidClaims || !strings.Contains(r.Message(), "no agentid claims") {
			t.Errorf("%s: a task ID without claims: allowed=%v %s %s", name, r.Allowed(), r.Code, r.Message())
		}
	}
	if r := decide(verifier.Credential{Kind: verifier.CredentialX509, Chain: ca.CreateX509SVID(plainID).Certificates}); !r.Allowed() {
		t.Errorf("a plain workload without claims: %s %s", r.Code, r.Message())
	}
}

// TestAttackOtherDomainIntermediate: with a root shared by two trust
// domains (one UpstreamAuthority above both SPIRE servers) in this trust
// domain's bundle, the other domain's SPIRE server CA — an intermediate
// with the other domain's SPIFFE ID, sent in the request's own chain
// (ext_authz's source.certificate) — minted this domain's task IDs and
// was accepted: go-spiffe does not check intermediates' IDs. A chain
// whose intermediate names another trust domain than the leaf's is now
// refused (untrusted); an intermediate of the leaf's own domain, or one
// without a SPIFFE ID, is fine.
func TestAttackOtherDomainIntermediate(t *testing.T) {
	wall := time.Now()
	root := newTestCA(t, nil, "root", wall)
	a := verifier.NewAuthenticator(verifier.Config{X509Bundles: x509bundle.FromX509Authorities(td, []*x509.Certificate{root.cert}),
		TrustDomains: []spiffeid.TrustDomain{td}, Clock: func() time.Time { return wall }})
	c := claims()
	c.Deadline = wall.Add(2 * time.Hour).UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name  string
		ca    string // the intermediate's SPIFFE ID ("" none)
		allow bool
	}{
		{"another domain's CA", "spiffe://tenant-b.example", false},
		{"a workload of another domain as CA", "spiffe://tenant-b.example/ca", false},
		{"this domain's CA", "spiffe://example.org", true},
		{"a CA without SPIFFE ID", "", true},
	} {
		inter := newTestCA(t, root, tc.ca, wall)
		leaf := inter.issue(t, taskID, wall, c)
		chain := url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})) +
			string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.cert.Raw})))
		p, err := a.PEM(chain)
		switch {
		case tc.allow && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.allow && err == nil:
			t.Errorf("%s: %s accepted", tc.name, p.ID())
		case !tc.allow:
			wantDeny(t, err, verifier.ReasonUntrusted, "another trust domain")
		}
		if _, err := a.Certificates([]*x509.Certificate{leaf, inter.cert}); (err == nil) != tc.allow {
			t.Errorf("%s, as a TLS chain: %v", tc.name, err)
		}
	}
}

// TestLivenessHookErrorReason: a liveness hook that fails with an error
// of its own (not a DenyError) refuses, coded liveness_unknown — it was
// coded no_credential, which mislabelled it in metrics and the audit log.
func TestLivenessHookErrorReason(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Liveness = func(*verifier.Peer, time.Time) error { return errors.New("feed broken") }
	r := e.v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendCheckAPI,
		Credential: verifier.Credential{Kind: verifier.CredentialPEM, Value: e.certPEM},
		Action:     verifier.Action{Kind: "http", Method: "GET", Path: "/kb/x"}})
	if r.Allowed() || r.Code != verifier.ReasonLivenessUnknown || !strings.Contains(r.Message(), "feed broken") {
		t.Errorf("allowed=%v %s %s", r.Allowed(), r.Code, r.Message())
	}
}

// testCA is a CA certificate and key made by hand, for chains testca
// does not make (intermediates of other trust domains).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var testCASerial int64 = 7000

// newTestCA makes a CA signed by parent (nil: self-signed) with the SPIFFE
// ID id as its URI SAN ("" none).
func newTestCA(t *testing.T, parent *testCA, id string, at time.Time) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	testCASerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(testCASerial), Subject: pkix.Name{CommonName: "ca " + id},
		NotBefore: at.Add(-time.Hour), NotAfter: at.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if id != "" {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key}
}

// issue makes an X.509-SVID for id with claims c.
func (ca *testCA) issue(t *testing.T, id spiffeid.ID, at time.Time, c svid.Claims) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	testCASerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(testCASerial), URIs: []*url.URL{id.URL()},
		NotBefore: at.Add(-time.Minute), NotAfter: at.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{e},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestAttackCAOutOfBundle (review 11 F4): a peer verified against a CA
// (or a JWT key) that SPIRE then removes from the bundle was served from
// the cache until CacheTTL (30 s) ran out. Authenticator.Flush forgets
// every cached peer — the daemon calls it whenever its Workload API
// sources update — and a cached chain expires with the first of its
// certificates, not with its leaf alone.
func TestAttackCAOutOfBundle(t *testing.T) {
	wall := time.Now()
	ca := testca.New(t, td, wall)
	c := claims()
	c.Deadline = wall.Add(2 * time.Hour).UTC().Truncate(time.Second)
	xb, jb := ca.X509Bundle(), ca.JWTBundle()
	clock := wall
	a := verifier.NewAuthenticator(verifier.Config{X509Bundles: xb, JWTBundles: jb, Audiences: []string{"kb"},
		TrustDomains: []spiffeid.TrustDomain{td}, Clock: func() time.Time { return clock }})
	s := ca.CreateX509SVID(taskID, ext(t, c))
	tok := ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims())
	if _, err := a.Certificates(s.Certificates); err != nil {
		t.Fatal(err)
	}
	if _, err := a.JWT(tok); err != nil {
		t.Fatal(err)
	}
	xb.RemoveX509Authority(ca.Cert())
	jb.RemoveJWTAuthority("k1")
	a.Flush()
	clock = wall.Add(time.Second)
	if p, err := a.Certificates(s.Certificates); err == nil {
		t.Errorf("X.509-SVID of a CA removed from the bundle accepted after Flush: %s", p.ID())
	}
	if p, err := a.JWT(tok); err == nil {
		t.Errorf("JWT-SVID of a key removed from the bundle accepted after Flush: %s", p.ID())
	}

	// An intermediate that expires before its leaf ends the cached peer.
	root := newTestCA(t, nil, "spiffe://example.org", wall)
	inter := newTestCA(t, root, "spiffe://example.org", wall) // valid until wall+24h
	leaf := inter.issue(t, taskID, wall, c)                   // valid until wall+1h
	clock = wall
	b := verifier.NewAuthenticator(verifier.Config{X509Bundles: x509bundle.FromX509Authorities(td, []*x509.Certificate{root.cert}),
		Clock: func() time.Time { return clock }, CacheTTL: 48 * time.Hour})
	short := newTestCA(t, root, "spiffe://example.org", wall.Add(-23*time.Hour-30*time.Minute)) // until wall+30m
	leaf2 := short.issue(t, taskID, wall, c)
	if _, err := b.Certificates([]*x509.Certificate{leaf, inter.cert}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Certificates([]*x509.Certificate{leaf2, short.cert}); err != nil {
		t.Fatal(err)
	}
	clock = wall.Add(45 * time.Minute)
	if _, err := b.Certificates([]*x509.Certificate{leaf, inter.cert}); err != nil {
		t.Errorf("a chain within its validity: %v", err)
	}
	if p, err := b.Certificates([]*x509.Certificate{leaf2, short.cert}); err == nil {
		t.Errorf("a cached chain whose intermediate expired 15 minutes ago: %s accepted", p.ID())
	} else {
		wantDeny(t, err, verifier.ReasonExpired, "expired")
	}
}

// TestRefusedPeerRecorded: a refusal of a verified credential by a later
// stage — its task revoked, the wrong audience — is recorded with the
// peer it named (who tried), as an allow is; before, the record named no
// peer, so the log could not tell which task kept calling after its
// revocation. A credential that does not verify names none.
func TestRefusedPeerRecorded(t *testing.T) {
	e := newAttackEnv(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e.v.Audit = w
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	if err := view.Update(time.Now().Add(time.Minute), []string{}); err != nil { // T-42 revoked: a listing newer than its credentials
		t.Fatal(err)
	}
	e.v.Liveness = view.Check
	q := func(c verifier.Credential) *verifier.Query {
		return &verifier.Query{Frontend: verifier.FrontendCheckAPI, Credential: c, Action: verifier.Action{Kind: "http", Method: "GET", Path: "/kb/x"}}
	}
	for _, c := range []verifier.Credential{
		{Kind: verifier.CredentialPEM, Value: e.certPEM},
		{Kind: verifier.CredentialJWT, Value: e.jwt},
		{Kind: verifier.CredentialJWT, Value: "x.y.z"},
	} {
		if r := e.v.Decide(context.Background(), q(c)); r.Allowed() || r.Authenticated {
			t.Fatalf("%v: allowed=%v authenticated=%v %s %s", c.Kind, r.Allowed(), r.Authenticated, r.Code, r.Message())
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for line := range strings.Lines(string(b)) {
		var rec struct{ Type, Peer, Reason, Decision string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Type == "decision" {
			peers = append(peers, rec.Peer)
			if rec.Decision != "deny" {
				t.Errorf("record %s", line)
			}
		}
	}
	want := []string{taskID.String(), taskID.String(), ""}
	if !slices.Equal(peers, want) {
		t.Errorf("recorded peers %q, want %q", peers, want)
	}
}
