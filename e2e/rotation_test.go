package e2e

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// selfTask registers a task entry for claims directly with the SPIRE server
// (selectors of type "agentid", the deadline as the entry's expiry, the
// given SVID TTLs in seconds, 0 for the server defaults) and makes this test
// process the task: it writes the manifest of its own PID with the
// launcher's code, as `agentid run` does before exec. The manifest is
// removed when the test ends. It returns the task's SPIFFE ID.
// handIncarnation is the incarnation of the tasks whose entries the tests
// write by hand, without one: a manifest's incarnation selector is one
// more than such an entry asks for.
const handIncarnation = "0123456789abcdef0123456789abcdef"

// readRecord reads a task record (attestor.TaskRecord) and returns its
// claims.
func readRecord(t *testing.T, path string) (svid.Claims, error) {
	t.Helper()
	rec, err := attestor.ParseTaskRecord(bytes.TrimSpace(mustRead(t, path)))
	return rec.Claims, err
}

func (s *stack) selfTask(t *testing.T, claims svid.Claims, x509TTL, jwtTTL int32) string {
	t.Helper()
	path := "/agent/" + claims.Agent + "/task/" + claims.Task
	var sels []*types.Selector
	for _, v := range claims.Selectors() {
		sels = append(sels, &types.Selector{Type: svid.DefaultSelectorType, Value: v})
	}
	s.srv.CreateEntryFrom(t, &types.Entry{
		SpiffeId:    &types.SPIFFEID{TrustDomain: s.srv.TrustDomain.Name(), Path: path},
		ParentId:    &types.SPIFFEID{TrustDomain: s.agent.NodeID.TrustDomain().Name(), Path: s.agent.NodeID.Path()},
		Selectors:   sels,
		ExpiresAt:   claims.Deadline.Unix(),
		X509SvidTtl: x509TTL,
		JwtSvidTtl:  jwtTTL,
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := (&attestor.Launch{Dir: s.manifestDir, Claims: claims, Incarnation: handIncarnation, Path: self}).Prepare()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(manifest) })
	return "spiffe://" + s.srv.TrustDomain.Name() + path
}

// rootClaims is a root researcher task ending in an hour.
func rootClaims(task string) svid.Claims {
	return svid.Claims{
		V: svid.Version, Agent: "researcher", Task: task, Model: "openai/gpt-4o", Prompt: digest,
		Scope: []string{"kb:read", "web:search"}, Principal: "spiffe://example.org/user/alice",
		Deadline: time.Now().Add(time.Hour).UTC().Truncate(time.Second),
	}
}

// x509Updates collects the updates of a Workload API X.509 watch.
type x509Updates struct {
	ch chan *workloadapi.X509Context
	t  *testing.T
}

func (w x509Updates) OnX509ContextUpdate(c *workloadapi.X509Context) {
	select {
	case w.ch <- c:
	default: // the test reads them as they come; never block the watch
	}
}

func (w x509Updates) OnX509ContextWatchError(err error) {
	if status.Code(err) != codes.Canceled {
		w.t.Logf("X.509 watch: %v", err)
	}
}

// TestSVIDRotationKeepsClaims: one process stays the same task while SPIRE
// rotates its short-lived X.509-SVID (20 s TTL, 10 s backdate: rotation at
// half-life, about 5 s after issue) and its JWT-SVIDs (10 s TTL); every new
// SVID, watched through the Workload API stream as a long-running workload
// sees it, carries exactly the claims of the first, a new serial, a later
// expiry, and verifies against the bundle served with it.
func TestSVIDRotationKeepsClaims(t *testing.T) {
	s := newStack(t)
	claims := rootClaims("ROT-1")
	id := s.selfTask(t, claims, 20, 10)

	first := s.agent.WaitX509SVID(t, 30*time.Second, func(v *x509svid.SVID) bool { return v.ID.String() == id })
	checkX509Claims(t, first, claims)
	if life := first.Certificates[0].NotAfter.Sub(time.Now()); life > 30*time.Second {
		t.Fatalf("X.509-SVID lives %v more: the entry's 20 s TTL was not applied", life)
	}
	jwt1 := s.waitJWT(t, id, claims, nil)

	// Watch the stream: the first update is the current SVID, then come the
	// rotations.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	updates := x509Updates{ch: make(chan *workloadapi.X509Context, 16), t: t}
	watchDone := make(chan error, 1)
	go func() { watchDone <- workloadapi.WatchX509Context(ctx, updates, workloadapi.WithAddr(s.agent.Addr())) }()
	defer func() { cancel(); <-watchDone }()

	start := time.Now()
	prev := first
	const rotations = 2
	for seen := 0; seen < rotations; {
		var upd *workloadapi.X509Context
		select {
		case upd = <-updates.ch:
		case <-ctx.Done():
			t.Fatalf("%d of %d rotations seen after %v", seen, rotations, time.Since(start))
		}
		cur := taskSVID(upd, id)
		if cur == nil {
			t.Fatalf("update without the task's SVID %s", id)
		}
		if cur.Certificates[0].SerialNumber.Cmp(prev.Certificates[0].SerialNumber) == 0 {
			continue // the current SVID again (first update)
		}
		seen++
		checkX509Claims(t, cur, claims)
		if !cur.Certificates[0].NotAfter.After(prev.Certificates[0].NotAfter) {
			t.Errorf("rotation %d: NotAfter %v not after %v", seen, cur.Certificates[0].NotAfter, prev.Certificates[0].NotAfter)
		}
		if _, _, err := x509svid.Verify(cur.Certificates, upd.Bundles); err != nil {
			t.Errorf("rotation %d: the new SVID does not verify against the served bundle: %v", seen, err)
		}
		t.Logf("rotation %d after %v: serial %x, NotAfter %s", seen, time.Since(start).Round(time.Millisecond),
			cur.Certificates[0].SerialNumber, cur.Certificates[0].NotAfter.Format(time.RFC3339))
		prev = cur
	}

	// The JWT-SVID is re-minted once the first is past half its life; the
	// new token carries the same claims.
	jwt2 := s.waitJWT(t, id, claims, func(j *jwtsvid.SVID) bool { return j.Marshal() != jwt1.Marshal() })
	if !jwt2.Expiry.After(jwt1.Expiry) {
		t.Errorf("new JWT-SVID expires %v, not after the first's %v", jwt2.Expiry, jwt1.Expiry)
	}
}

// taskSVID returns the SVID for id in an X.509 context, or nil.
func taskSVID(c *workloadapi.X509Context, id string) *x509svid.SVID {
	for _, v := range c.SVIDs {
		if v.ID.String() == id {
			return v
		}
	}
	return nil
}

func checkX509Claims(t *testing.T, v *x509svid.SVID, want svid.Claims) {
	t.Helper()
	got, found, err := svid.FromX509SVID(v)
	if !found || err != nil {
		t.Fatalf("X.509-SVID %s (serial %x): claims found=%v err=%v", v.ID, v.Certificates[0].SerialNumber, found, err)
	}
	if !got.Equal(want) {
		t.Fatalf("X.509-SVID %s (serial %x) claims\n got %+v\nwant %+v", v.ID, v.Certificates[0].SerialNumber, got, want)
	}
}

// waitJWT polls for a JWT-SVID for audience "kb" for which want holds (any
// if nil), validates its signature against the JWT bundle SPIRE serves and
// checks that it carries the claims.
func (s *stack) waitJWT(t *testing.T, id string, claims svid.Claims, want func(*jwtsvid.SVID) bool) *jwtsvid.SVID {
	t.Helper()
	got := s.agent.WaitJWTSVID(t, 30*time.Second, "kb", func(j *jwtsvid.SVID) bool {
		return j.ID.String() == id && (want == nil || want(j))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bundles, err := workloadapi.FetchJWTBundles(ctx, workloadapi.WithAddr(s.agent.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	valid, err := jwtsvid.ParseAndValidate(got.Marshal(), bundles, []string{"kb"})
	if err != nil {
		t.Fatalf("JWT-SVID does not validate: %v", err)
	}
	c, found, err := svid.FromJWTSVID(valid)
	if !found || err != nil {
		t.Fatalf("JWT-SVID claims found=%v err=%v", found, err)
	}
	if !c.Equal(claims) {
		t.Fatalf("JWT-SVID claims\n got %+v\nwant %+v", c, claims)
	}
	return valid
}
