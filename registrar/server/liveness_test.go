package server

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WatchLiveness streams what SPIRE holds — a task revoked through the
// registrar, or deleted in SPIRE directly, leaves the next snapshot — and
// answers only its subscribers.
func TestWatchLiveness(t *testing.T) {
	r, fe := newRegistrar(t, loadPolicy(t))
	verifierID := spiffeid.RequireFromString("spiffe://example.org/agentid/verifier")
	svc := New(r, WithDefaultParentID(testNode), WithLiveness([]spiffeid.ID{verifierID}, 20*time.Millisecond))
	op, _ := serveOperator(t, svc)
	ca := testca.New(t, testTD, time.Now())
	addr := serveAgent(t, svc, ca, ca.X509Bundle())
	p := createPlanner(t, op, "P1")
	createPlanner(t, op, "P2")

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
		t.Fatalf("first snapshot %v", first.LiveTasks)
	}
	if _, err := op.RevokeTask(ctxT(t), &registrarv1.RevokeTaskRequest{SpiffeId: p.SpiffeId}); err != nil {
		t.Fatal(err)
	}
	until := func(want func(*registrarv1.LivenessSnapshot) bool) *registrarv1.LivenessSnapshot {
		t.Helper()
		for i := 0; i < 200; i++ {
			snap, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if want(snap) {
				return snap
			}
		}
		t.Fatal("no snapshot reflected the change")
		return nil
	}
	last := until(func(s *registrarv1.LivenessSnapshot) bool { return !slices.Contains(s.LiveTasks, p.SpiffeId) })
	if last.AsOfUnixNano <= first.AsOfUnixNano {
		t.Fatalf("snapshots do not advance: %d after %d", last.AsOfUnixNano, first.AsOfUnixNano)
	}
	// Deleted in SPIRE directly (spire-server entry delete).
	if n := fe.Delete(fe.Entries()[0].GetId()); n != 1 {
		t.Fatalf("deleted %d", n)
	}
	until(func(s *registrarv1.LivenessSnapshot) bool { return len(s.LiveTasks) == 0 })
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
