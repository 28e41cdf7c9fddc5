package verifier_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// reviveEnv is a verifier with a liveness view and a clock the test moves,
// and credentials of one task issued at chosen times as SPIRE issues them
// (X.509 NotBefore backdated 10 s, JWT iat the issue time).
type reviveEnv struct {
	t     *testing.T
	ca    *testca.CA
	v     *verifier.Verifier
	view  *verifier.LivenessView
	now   time.Time
	claim svid.Claims
	// jwtTTL is the JWT-SVIDs' lifetime (SPIRE's default, 5 min, unless
	// set).
	jwtTTL time.Duration
}

func newReviveEnv(t *testing.T, wall time.Time) *reviveEnv {
	e := &reviveEnv{t: t, ca: testca.New(t, td, wall), now: wall}
	clock := func() time.Time { return e.now }
	e.view = &verifier.LivenessView{MaxStaleness: time.Hour}
	e.claim = claims()
	e.claim.Chain = nil
	e.claim.Deadline = wall.Add(2 * time.Hour).Truncate(time.Second).UTC()
	e.v = &verifier.Verifier{
		Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: e.ca.X509Bundle(), JWTBundles: e.ca.JWTBundle(),
			Audiences: []string{"kb"}, TrustDomains: []spiffeid.TrustDomain{td}, Clock: clock}),
		Policy:   loadPolicy(t, attackPolicy),
		Liveness: e.view.Check,
		Clock:    clock,
	}
	return e
}

// issued is one incarnation's credentials, issued at a time.
type issued struct {
	chain []*x509.Certificate
	pem   string // URL-encoded, as Envoy forwards it
	jwt   string
}

func (e *reviveEnv) issue(at time.Time) issued {
	e.t.Helper()
	s := e.ca.CreateX509SVID(taskID, ext(e.t, e.claim), testca.WithLifetime(at.Add(-10*time.Second), at.Add(time.Hour)))
	p, _ := testca.SVIDPEM(e.t, s)
	extra := e.claim.JWTClaims()
	ttl := e.jwtTTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	extra["iat"], extra["exp"] = at.Unix(), at.Add(ttl).Unix()
	return issued{chain: s.Certificates, pem: url.PathEscape(string(p)), jwt: e.ca.CreateJWTSVID(taskID, []string{"kb"}, extra)}
}

// decisions asks every front-end path of the test about the credentials:
// ext_authz with the PEM Envoy forwards and with the JWT, the middleware
// with the TLS client certificate and with the JWT. It returns one
// "allowed" or deny reason per path.
func (e *reviveEnv) decisions(c issued) map[string]string {
	e.t.Helper()
	out := map[string]string{}
	ext := &verifier.ExtAuthz{V: e.v}
	for name, req := range map[string]*authv3.CheckRequest{
		"ext_authz pem": checkReq(c.pem, "GET", "/kb/doc", nil, ""),
		"ext_authz jwt": checkReq("", "GET", "/kb/doc", map[string]string{"authorization": "Bearer " + c.jwt}, ""),
	} {
		resp, err := ext.Check(context.Background(), req)
		if err != nil {
			e.t.Fatal(err)
		}
		if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
			out[name] = "allowed"
		} else {
			out[name] = resp.GetStatus().GetMessage()
		}
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) })
	for name, set := range map[string]func(*http.Request){
		"middleware x509": func(r *http.Request) { r.TLS = &tls.ConnectionState{PeerCertificates: c.chain} },
		"middleware jwt":  func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.jwt) },
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/kb/doc", nil)
		set(r)
		e.v.Middleware(ok).ServeHTTP(rec, r)
		if rec.Code == 204 {
			out[name] = "allowed"
		} else {
			out[name] = rec.Body.String()
		}
	}
	return out
}

func (e *reviveEnv) want(what string, c issued, allowed bool) {
	e.t.Helper()
	for path, got := range e.decisions(c) {
		switch {
		case allowed && got != "allowed":
			e.t.Errorf("%s, %s: refused (%s), want allowed", what, path, strings.TrimSpace(got))
		case !allowed && !strings.Contains(got, verifier.ReasonRevoked):
			e.t.Errorf("%s, %s: %s, want refused as revoked", what, path, strings.TrimSpace(got))
		}
	}
}

// A task revoked and later created again under the same SPIFFE ID (task
// IDs are the caller's): the credentials issued to the revoked
// incarnation, with its old claims, stay refused for their whole life —
// not only while the view remembers the removal for its first 30 s —
// while the new incarnation's own credentials are accepted. Here the feed
// carries no creation times (a registrar that does not send them): the
// view remembers the removal and refuses credentials issued before it.
// Found by review (F2): from 30 s after the removal on, the old
// incarnation's X.509- and JWT-SVIDs were accepted again.
func TestLivenessRevokedCredentialNotRevivedByRecreation(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	e := newReviveEnv(t, t0)
	old := e.issue(t0)
	must(t, e.view.Update(t0.Add(time.Second), []string{taskID.String()}))
	e.now = t0.Add(time.Second)
	e.want("live", old, true)

	must(t, e.view.Apply(t0.Add(2*time.Second), nil, []string{taskID.String()})) // revoked
	e.now = t0.Add(2 * time.Second)
	e.want("revoked", old, false)

	must(t, e.view.Apply(t0.Add(3*time.Second), []string{taskID.String()}, nil)) // created again
	fresh := e.issue(t0.Add(4 * time.Second))
	for _, after := range []time.Duration{4 * time.Second, time.Minute, 4 * time.Minute} {
		must(t, e.view.Apply(t0.Add(after), nil, nil)) // later deltas
		e.now = t0.Add(after)
		e.want("re-created, "+after.String()+" after the old credentials' issue: old", old, false)
		e.want("re-created, "+after.String()+" after: new", fresh, true)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The same with the creation times of the feed (SPIRE's created_at):
// the view refuses every credential issued before the current
// incarnation's entry was created — also once the removal is forgotten,
// and also when the task was revoked and created again within one feed
// interval, where no listing lacks it and only its new creation time
// tells.
func TestLivenessRecreatedIncarnation(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	first := []verifier.LiveTask{{ID: taskID.String(), Created: t0.Add(-time.Minute)}}

	t.Run("removal seen", func(t *testing.T) {
		e := newReviveEnv(t, t0)
		e.view.RememberRemoved = 10 * time.Second // forgotten early: the creation time alone decides
		old := e.issue(t0)
		must(t, e.view.UpdateTasks(t0.Add(time.Second), first))
		e.now = t0.Add(time.Second)
		e.want("live", old, true)
		must(t, e.view.ApplyTasks(t0.Add(2*time.Second), nil, []string{taskID.String()}))
		e.now = t0.Add(2 * time.Second)
		e.want("revoked", old, false)
		created := t0.Add(3 * time.Second)
		must(t, e.view.ApplyTasks(t0.Add(4*time.Second), []verifier.LiveTask{{ID: taskID.String(), Created: created}}, nil))
		sameSecond := e.issue(created.Add(900 * time.Millisecond)) // truncated to the creation's second
		fresh := e.issue(t0.Add(5 * time.Second))
		for _, after := range []time.Duration{5 * time.Second, time.Minute, 4 * time.Minute} {
			must(t, e.view.ApplyTasks(t0.Add(after), nil, nil))
			e.now = t0.Add(after)
			e.want("re-created, "+after.String()+": old", old, false)
			e.want("re-created, "+after.String()+": new", fresh, true)
			e.want("re-created, "+after.String()+": new, issued in the creation's second", sameSecond, true)
		}
		if n := e.view.Removed(); n != 0 {
			t.Errorf("%d removals remembered after RememberRemoved", n)
		}
	})

	t.Run("within one interval", func(t *testing.T) {
		e := newReviveEnv(t, t0)
		old := e.issue(t0)
		must(t, e.view.UpdateTasks(t0.Add(time.Second), first))
		// Revoked and created again between two listings: the next delta
		// names it as added, with its new creation time.
		created := t0.Add(2 * time.Second)
		must(t, e.view.ApplyTasks(t0.Add(3*time.Second), []verifier.LiveTask{{ID: taskID.String(), Created: created}}, nil))
		fresh := e.issue(t0.Add(3 * time.Second))
		e.now = t0.Add(3 * time.Second)
		e.want("re-created within an interval: old", old, false)
		e.want("re-created within an interval: new", fresh, true)
		// A full listing after a reconnect, with the new incarnation.
		must(t, e.view.UpdateTasks(t0.Add(4*time.Minute), []verifier.LiveTask{{ID: taskID.String(), Created: created}}))
		e.now = t0.Add(4 * time.Minute)
		e.want("after a full listing: old", old, false)
		e.want("after a full listing: new", fresh, true)
	})

	t.Run("full listing after a reconnect", func(t *testing.T) {
		e := newReviveEnv(t, t0)
		old := e.issue(t0)
		must(t, e.view.UpdateTasks(t0.Add(time.Second), first))
		must(t, e.view.UpdateTasks(t0.Add(5*time.Second), []verifier.LiveTask{{ID: taskID.String(), Created: t0.Add(4 * time.Second)}}))
		fresh := e.issue(t0.Add(4 * time.Second))
		e.now = t0.Add(5 * time.Second)
		e.want("re-created between full listings: old", old, false)
		e.want("re-created between full listings: new", fresh, true)
	})
}

// A stale listing (a lagging datastore, another registrar's listing after
// a reconnect) that names a revoked task's entry again, for longer than
// the old 30 s memory: the revoked incarnation stays refused for as long
// as the view remembers the removal (RememberRemoved, by default SPIRE's
// default X.509-SVID lifetime). Suspected by review (F2): the stale
// listing brought the task back once the removal was forgotten.
func TestLivenessStaleListingWithCreationTimes(t *testing.T) {
	t0 := time.Now().Truncate(time.Second)
	e := newReviveEnv(t, t0)
	e.jwtTTL = time.Hour // an operator's longer JWT-SVID lifetime
	old := e.issue(t0)
	listed := []verifier.LiveTask{{ID: taskID.String(), Created: t0.Add(-time.Minute)}}
	must(t, e.view.UpdateTasks(t0.Add(time.Second), listed))
	must(t, e.view.ApplyTasks(t0.Add(2*time.Second), nil, []string{taskID.String()}))
	// The stale listing, again and again, and a stale delta.
	for _, after := range []time.Duration{3 * time.Second, 40 * time.Second, 10 * time.Minute, 59 * time.Minute} {
		must(t, e.view.UpdateTasks(t0.Add(after), listed))
		must(t, e.view.ApplyTasks(t0.Add(after+time.Millisecond), listed, nil))
		e.now = t0.Add(after + time.Millisecond)
		e.want("stale listing "+after.String()+" after the revocation", old, false)
	}
}

// The removals a view remembers do not grow without bound: each is
// forgotten RememberRemoved after it was seen, so a view under a steady
// stream of revocations holds about rate × RememberRemoved of them.
func TestLivenessRemovalMemoryBounded(t *testing.T) {
	t0 := time.Now()
	v := &verifier.LivenessView{MaxStaleness: time.Hour, RememberRemoved: time.Minute}
	must(t, v.Update(t0, nil))
	const perSecond = 50
	peak := 0
	for s := 1; s <= 600; s++ { // ten minutes, 30,000 revocations
		ids := make([]verifier.LiveTask, perSecond)
		gone := make([]string, perSecond)
		for i := range ids {
			ids[i].ID = spiffeid.RequireFromPathf(td, "/agent/a/task/T-%d-%d", s, i).String()
			ids[i].Created = t0
			gone[i] = ids[i].ID
		}
		must(t, v.ApplyTasks(t0.Add(time.Duration(s)*time.Second-500*time.Millisecond), ids, nil))
		must(t, v.ApplyTasks(t0.Add(time.Duration(s)*time.Second), nil, gone))
		peak = max(peak, v.Removed())
	}
	if limit := perSecond * 61; peak > limit {
		t.Errorf("peak of %d removals remembered, want at most %d (rate × RememberRemoved)", peak, limit)
	}
	must(t, v.Apply(t0.Add(602*time.Second), nil, nil))
	must(t, v.Apply(t0.Add(662*time.Second), nil, nil))
	if n := v.Removed(); n != 0 || v.Len() != 0 {
		t.Errorf("after RememberRemoved without revocations: %d removals remembered, %d live", n, v.Len())
	}
	t.Logf("peak %d removals remembered for 30,000 revocations at %d/s with RememberRemoved 1m", peak, perSecond)
}
