package verifier_test

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	td       = spiffeid.RequireTrustDomainFromString("example.org")
	now      = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	taskID   = spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42")
	plainID  = spiffeid.RequireFromString("spiffe://example.org/web")
	deadline = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
)

func claims() svid.Claims {
	return svid.Claims{
		V: 1, Agent: "researcher", Task: "T-42", Model: "openai/gpt-4o",
		Prompt:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Scope:     []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice",
		Chain:     []string{"spiffe://example.org/agent/planner/task/T-41"},
		Deadline:  deadline,
	}
}

func ext(t testing.TB, c svid.Claims) testca.SVIDOption {
	t.Helper()
	e, err := c.Extension(nil)
	if err != nil {
		t.Fatal(err)
	}
	return testca.WithExtensions(e)
}

func mustClaims(p verifier.Peer) svid.Claims {
	c, _ := p.Claims()
	return c
}

func wantDeny(t *testing.T, err error, reason, detail string) {
	t.Helper()
	var de *verifier.DenyError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want a DenyError %q", err, reason)
	}
	if de.Reason != reason || !strings.Contains(de.Error(), detail) {
		t.Fatalf("deny %q (%v), want %q containing %q", de.Reason, de, reason, detail)
	}
}

func TestCertificates(t *testing.T) {
	ca := testca.New(t, td, now)
	other := testca.New(t, td, now) // same trust domain, another CA: a forger
	partnerTD := spiffeid.RequireTrustDomainFromString("partner.example")
	partner := testca.New(t, partnerTD, now)
	bundles := x509bundle.NewSet(ca.X509Bundle(), partner.X509Bundle())
	a := verifier.NewAuthenticator(verifier.Config{X509Bundles: bundles, TrustDomains: []spiffeid.TrustDomain{td},
		Clock: func() time.Time { return now }})

	p, err := a.Certificates(ca.CreateX509SVID(taskID, ext(t, claims())).Certificates)
	if err != nil || !p.IsTask() || p.ID() != taskID || !mustClaims(p).Equal(claims()) || p.Kind() != "x509" || p.Serial() == "" {
		t.Fatalf("task peer: %+v %v", p, err)
	}
	if !p.Expires().Equal(now.Add(time.Hour)) {
		t.Errorf("expires %v, want the certificate's NotAfter", p.Expires())
	}

	p, err = a.Certificates(ca.CreateX509SVID(plainID).Certificates)
	if err != nil || p.IsTask() || p.ID() != plainID {
		t.Fatalf("plain peer: %+v %v", p, err)
	}

	_, err = a.Certificates(other.CreateX509SVID(taskID, ext(t, claims())).Certificates)
	wantDeny(t, err, verifier.ReasonUntrusted, "x509svid: could not verify leaf certificate")

	_, err = a.Certificates(ca.CreateX509SVID(taskID, ext(t, claims()), testca.WithLifetime(now.Add(-2*time.Hour), now.Add(-time.Hour))).Certificates)
	wantDeny(t, err, verifier.ReasonExpired, "expired")

	_, err = a.Certificates(partner.CreateX509SVID(spiffeid.RequireFromString("spiffe://partner.example/agent/researcher/task/T-42")).Certificates)
	wantDeny(t, err, verifier.ReasonForeignDomain, "not in an allowed trust domain")

	_, err = a.Certificates(ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/T-42"), ext(t, claims())).Certificates)
	wantDeny(t, err, verifier.ReasonInvalidClaims, "SPIFFE ID mismatch")

	_, err = a.Certificates(nil)
	wantDeny(t, err, verifier.ReasonNoCredential, "no client certificate")
}

func TestCacheHonoursDeadline(t *testing.T) {
	ca := testca.New(t, td, now)
	c := claims()
	c.Deadline = now.Add(10 * time.Minute)
	clock := now
	a := verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), Clock: func() time.Time { return clock }, CacheTTL: time.Hour})
	chain := ca.CreateX509SVID(taskID, ext(t, c)).Certificates
	if _, err := a.Certificates(chain); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(5 * time.Minute)
	if _, err := a.Certificates(chain); err != nil {
		t.Fatalf("cached peer before the deadline: %v", err)
	}
	clock = now.Add(11 * time.Minute)
	_, err := a.Certificates(chain)
	wantDeny(t, err, verifier.ReasonInvalidClaims, "expired")
}

func TestPEM(t *testing.T) {
	ca := testca.New(t, td, now)
	a := verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle(), Clock: func() time.Time { return now }})
	certs, _ := testca.SVIDPEM(t, ca.CreateX509SVID(taskID, ext(t, claims())))
	for name, in := range map[string]string{"plain": string(certs), "URL-encoded (Envoy)": url.PathEscape(string(certs))} {
		p, err := a.PEM(in)
		if err != nil || !p.IsTask() {
			t.Fatalf("%s: %+v %v", name, p, err)
		}
	}
	_, err := a.PEM("garbage")
	wantDeny(t, err, verifier.ReasonBadCredential, "no PEM certificate")
	_, err = a.PEM(strings.Repeat("A", 70<<10))
	wantDeny(t, err, verifier.ReasonBadCredential, "too large")
}

func TestJWT(t *testing.T) {
	wall := time.Now()
	ca := testca.New(t, td, wall)
	c := claims()
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	a := verifier.NewAuthenticator(verifier.Config{JWTBundles: ca.JWTBundle(), Audiences: []string{"kb"}})

	p, err := a.JWT(ca.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()))
	if err != nil || !p.IsTask() || p.Kind() != "jwt" || p.JWTID() == "" || !mustClaims(p).Equal(c) {
		t.Fatalf("JWT peer: %+v %v", p, err)
	}

	_, err = a.JWT(ca.CreateJWTSVID(taskID, []string{"other"}, c.JWTClaims()))
	wantDeny(t, err, verifier.ReasonWrongAudience, "audience")

	other := testca.New(t, td, wall)
	_, err = a.JWT(other.CreateJWTSVID(taskID, []string{"kb"}, c.JWTClaims()))
	wantDeny(t, err, verifier.ReasonUntrusted, "")

	// alg=none: header {"alg":"none"}, no signature.
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"` + taskID.String() + `","aud":["kb"],"exp":` + "9999999999" + `}`))
	_, err = a.JWT(hdr + "." + body + ".")
	var de *verifier.DenyError
	if !errors.As(err, &de) || (de.Reason != verifier.ReasonBadCredential && de.Reason != verifier.ReasonUntrusted) {
		t.Fatalf("alg=none: %v", err)
	}

	bad := c
	bad.Task = "other"
	_, err = a.JWT(ca.CreateJWTSVID(taskID, []string{"kb"}, bad.JWTClaims()))
	wantDeny(t, err, verifier.ReasonInvalidClaims, "SPIFFE ID mismatch")

	none := verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()})
	_, err = none.JWT("x.y.z")
	wantDeny(t, err, verifier.ReasonBadCredential, "not accepted")
}
