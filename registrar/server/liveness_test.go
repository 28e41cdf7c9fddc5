package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// livenessFixture is a registrar with the liveness feed (20 ms interval)
// for one verifier ID, on a fake SPIRE holding two planner tasks.
type livenessFixture struct {
	fe         *fakeentry.Server
	verifierID spiffeid.ID
	op         registrarv1.RegistrarClient
	ca         *testca.CA
	addr       string            // the mTLS listener
	p1         *registrarv1.Task // planner P1 (P2 exists too)
}

func newLivenessFixture(t *testing.T) livenessFixture {
	t.Helper()
	r, fe := newRegistrar(t, loadPolicy(t))
	f := livenessFixture{fe: fe, verifierID: spiffeid.RequireFromString("spiffe://example.org/agentid/verifier")}
	svc := New(r, WithDefaultParentID(testNode), WithLiveness([]spiffeid.ID{f.verifierID}, 20*time.Millisecond))
	f.op, _ = serveOperator(t, svc)
	f.ca = testca.New(t, testTD, time.Now())
	f.addr = serveAgent(t, svc, f.ca, f.ca.X509Bundle())
	f.p1 = createPlanner(t, f.op, "P1")
	createPlanner(t, f.op, "P2")
	return f
}

// WatchLiveness streams what SPIRE holds — a task revoked through the
// registrar, or deleted in SPIRE directly, leaves the next snapshot — and
// answers only its subscribers.
func TestWatchLiveness(t *testing.T) {
	f := newLivenessFixture(t)
	fe, verifierID, op, ca, addr, p := f.fe, f.verifierID, f.op, f.ca, f.addr, f.p1

	watch := func(id spiffeid.ID) registrarv1.Registrar_WatchLivenessClient {
		s, err := agentClient(t, addr, ca.CreateX509SVID(id), ca.X509Bundle()).WatchLiveness(ctxT(t), &registrarv1.WatchLivenessRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := watch(spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/P1")).Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a task watching liveness: %v", err)
	}
	s := watch(verifierID)
	first, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.LiveTasks) != 2 || !slices.Contains(first.LiveTasks, p.SpiffeId) {
		t.Fatalf("first message %v", first.LiveTasks)
	}
	// view is what a verifier builds from the stream: the full message,
	// then every delta against the message before it.
	view := map[string]bool{}
	for _, id := range first.LiveTasks {
		view[id] = true
	}
	last := first
	until := func(want func(map[string]bool) bool) {
		t.Helper()
		for i := 0; i < 200; i++ {
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.BaseAsOfUnixNano != last.AsOfUnixNano || m.AsOfUnixNano <= last.AsOfUnixNano {
				t.Fatalf("update as of %d on base %d after %d", m.AsOfUnixNano, m.BaseAsOfUnixNano, last.AsOfUnixNano)
			}
			last = m
			for _, id := range m.Added {
				view[id] = true
			}
			for _, id := range m.Removed {
				delete(view, id)
			}
			if want(view) {
				return
			}
		}
		t.Fatal("no update reflected the change")
	}
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: p.SpiffeId}); err != nil {
		t.Fatal(err)
	}
	until(func(v map[string]bool) bool { return !v[p.SpiffeId] && len(v) == 1 })
	// Deleted in SPIRE directly (spire-server entry delete).
	if n := fe.Delete(fe.Entries()[0].GetId()); n != 1 {
		t.Fatalf("deleted %d", n)
	}
	until(func(v map[string]bool) bool { return len(v) == 0 })
	// A SPIRE that fails ends the stream with Unavailable (the verifier reconnects).
	fe.Fail(errors.New("datastore down"))
	for {
		if _, err := s.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream ended with %v, want Unavailable", err)
			}
			break
		}
	}
}

// The feed's cost does not grow with the number of verifiers or of live
// tasks: the registrar lists SPIRE once per interval whatever the number
// of subscribers, and after the first (full) message each update carries
// only what changed, against the update before it.
func TestWatchLivenessFlatCost(t *testing.T) {
	f := newLivenessFixture(t)
	fe, verifierID, op, ca, addr, p := f.fe, f.verifierID, f.op, f.ca, f.addr, f.p1

	const subscribers = 5
	streams := make([]registrarv1.Registrar_WatchLivenessClient, subscribers)
	for i := range streams {
		s, err := agentClient(t, addr, ca.CreateX509SVID(verifierID), ca.X509Bundle()).WatchLiveness(ctxT(t), &registrarv1.WatchLivenessRequest{})
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	recv := func(s registrarv1.Registrar_WatchLivenessClient) *registrarv1.LivenessSnapshot {
		t.Helper()
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	last := make([]*registrarv1.LivenessSnapshot, subscribers)
	for i, s := range streams {
		last[i] = recv(s)
		if last[i].BaseAsOfUnixNano != 0 || len(last[i].LiveTasks) != 2 {
			t.Fatalf("first message: base %d, %d live tasks; want a full message of 2", last[i].BaseAsOfUnixNano, len(last[i].LiveTasks))
		}
	}
	listsBefore := fe.ListCalls.Load()
	const rounds = 10
	for range rounds {
		for i, s := range streams {
			m := recv(s)
			if m.BaseAsOfUnixNano != last[i].AsOfUnixNano || m.AsOfUnixNano <= m.BaseAsOfUnixNano {
				t.Fatalf("update as of %d applies to %d, want the previous message's %d", m.AsOfUnixNano, m.BaseAsOfUnixNano, last[i].AsOfUnixNano)
			}
			if n := len(m.LiveTasks) + len(m.Added) + len(m.Removed); n != 0 {
				t.Fatalf("nothing changed but the update carries %d task IDs", n)
			}
			last[i] = m
		}
	}
	// Each subscriber saw `rounds` updates; one listing per interval serves
	// them all (a margin of 3 for the listings in flight at either end).
	if lists := fe.ListCalls.Load() - listsBefore; lists > rounds+3 {
		t.Fatalf("%d subscribers × %d updates cost %d listings of SPIRE, want at most %d", subscribers, rounds, lists, rounds+3)
	}

	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: p.SpiffeId}); err != nil {
		t.Fatal(err)
	}
	for i, s := range streams {
		for {
			m := recv(s)
			if m.BaseAsOfUnixNano != last[i].AsOfUnixNano {
				t.Fatalf("update applies to %d, want %d", m.BaseAsOfUnixNano, last[i].AsOfUnixNano)
			}
			last[i] = m
			if len(m.Removed) > 0 {
				if len(m.Removed) != 1 || m.Removed[0] != p.SpiffeId || len(m.Added) != 0 {
					t.Fatalf("revoking %s: added %v removed %v", p.SpiffeId, m.Added, m.Removed)
				}
				break
			}
		}
	}
	p3 := createPlanner(t, op, "P3")
	for _, s := range streams {
		for {
			if m := recv(s); len(m.Added) > 0 {
				if len(m.Added) != 1 || m.Added[0] != p3.SpiffeId {
					t.Fatalf("creating %s: added %v", p3.SpiffeId, m.Added)
				}
				break
			}
		}
	}
}

// A stopping registrar ends the verifiers' streams at once (Unavailable:
// they reconnect elsewhere) and refuses new ones, so that its graceful
// stop does not wait out its timeout.
func TestStopLivenessEndsStreams(t *testing.T) {
	r, _ := newRegistrar(t, loadPolicy(t))
	verifierID := spiffeid.RequireFromString("spiffe://example.org/agentid/verifier")
	svc := New(r, WithDefaultParentID(testNode), WithLiveness([]spiffeid.ID{verifierID}, 20*time.Millisecond))
	ca := testca.New(t, testTD, time.Now())
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	watch := func() registrarv1.Registrar_WatchLivenessClient {
		s, err := agentClient(t, addr, ca.CreateX509SVID(verifierID), ca.X509Bundle()).WatchLiveness(ctxT(t), &registrarv1.WatchLivenessRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := watch()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	svc.StopLiveness()
	for {
		if _, err := s.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("stream ended with %v, want Unavailable", err)
			}
			break
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the stream took %v to end", d)
	}
	if _, err := watch().Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a new watch on a stopping registrar: %v, want Unavailable", err)
	}
}

// TestLivenessTombstones: a task created and revoked between two listings
// is in neither, so the diff of the two never names it, and a verifier
// would accept its fresh SVID until the view's grace for new tasks ends
// (up to 15 s; review 5). A task revoked through this registrar is named
// in the next delta's removals whether or not a listing saw it.
func TestLivenessTombstones(t *testing.T) {
	h := newLivenessHub(func(context.Context) ([]string, []int64, []int64, error) { return nil, nil, nil, nil }, time.Hour, newTombstones(time.Now, 0))
	h.running = true // publish is driven by the test
	sub := h.subscribe()
	t0 := time.Now()
	if !h.publish(t0, []string{"P1"}, nil, nil) {
		t.Fatal("publish")
	}
	<-sub.ch // the full listing
	h.tomb.add([]string{"T-fast", "P1"})
	h.publish(t0.Add(time.Second), []string{}, nil, nil)
	d := <-sub.ch
	slices.Sort(d.Removed)
	if !slices.Equal(d.Removed, []string{"P1", "T-fast"}) {
		t.Fatalf("removed %v, want P1 and T-fast (each once)", d.Removed)
	}
	h.publish(t0.Add(2*time.Second), []string{}, nil, nil)
	if d := <-sub.ch; len(d.Removed) != 0 {
		t.Fatalf("a tombstone sent twice: %v", d.Removed)
	}
}

// TestLivenessIncarnations: every live task comes with its entry's
// creation time, and a task listed again with a later one — revoked and
// created again under the same SPIFFE ID, possibly between two listings,
// where no listing lacks it — is sent as added with the new time, so that
// the verifiers refuse the revoked incarnation's credentials (review F2).
func TestLivenessIncarnations(t *testing.T) {
	h := newLivenessHub(func(context.Context) ([]string, []int64, []int64, error) { return nil, nil, nil, nil }, time.Hour, newTombstones(time.Now, 0))
	h.running = true // publish is driven by the test
	sub := h.subscribe()
	t0 := time.Now()
	h.publish(t0, []string{"P1", "T-42"}, []int64{100, 200}, nil)
	full := <-sub.ch
	if !slices.Equal(full.LiveTasks, []string{"P1", "T-42"}) || !slices.Equal(full.LiveTasksCreated, []int64{100, 200}) {
		t.Fatalf("full message: %v created %v", full.LiveTasks, full.LiveTasksCreated)
	}
	h.publish(t0.Add(time.Second), []string{"P1", "T-42"}, []int64{100, 200}, nil)
	if d := <-sub.ch; len(d.Added)+len(d.Removed)+len(d.AddedCreated) != 0 {
		t.Fatalf("nothing changed, delta %v", d)
	}
	// T-42 revoked and created again within the interval; T-43 new.
	h.publish(t0.Add(2*time.Second), []string{"P1", "T-42", "T-43"}, []int64{100, 201, 201}, nil)
	d := <-sub.ch
	if !slices.Equal(d.Added, []string{"T-42", "T-43"}) || !slices.Equal(d.AddedCreated, []int64{201, 201}) || len(d.Removed) != 0 {
		t.Fatalf("delta added %v created %v removed %v, want T-42 (201) and T-43 (201)", d.Added, d.AddedCreated, d.Removed)
	}
	// A new subscriber's full message carries the new incarnation.
	late := h.subscribe()
	if m := <-late.ch; !slices.Equal(m.LiveTasksCreated, []int64{100, 201, 201}) {
		t.Fatalf("late full message: %v %v", m.LiveTasks, m.LiveTasksCreated)
	}
}

// An ID listed twice (two registrars' racing creates, before the later
// entry is deleted): the earliest creation time stands for it, and the
// delta names it once.
func TestLivenessDuplicateEntries(t *testing.T) {
	h := newLivenessHub(func(context.Context) ([]string, []int64, []int64, error) { return nil, nil, nil, nil }, time.Hour, newTombstones(time.Now, 0))
	h.running = true
	sub := h.subscribe()
	t0 := time.Now()
	h.publish(t0, []string{"P1"}, []int64{100}, nil)
	<-sub.ch
	h.publish(t0.Add(time.Second), []string{"P1", "T-42", "T-42"}, []int64{100, 301, 300}, nil)
	d := <-sub.ch
	if !slices.Equal(d.Added, []string{"T-42"}) || !slices.Equal(d.AddedCreated, []int64{300}) {
		t.Fatalf("added %v created %v, want T-42 once, created 300", d.Added, d.AddedCreated)
	}
	h.publish(t0.Add(2*time.Second), []string{"P1", "T-42"}, []int64{100, 300}, nil) // the later entry deleted
	if d := <-sub.ch; len(d.Added)+len(d.Removed) != 0 {
		t.Fatalf("settled: delta %v", d)
	}
}
