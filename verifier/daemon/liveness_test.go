package daemon_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/registrar"
	registrarserver "github.com/agentid/agentid/registrar/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The kill switch through the daemon: a feed that goes away (SPIRE
// failing, the registrar killed and restarted) turns task peers to
// liveness_unknown after max_staleness, and back once it returns, by
// itself; a task deleted in SPIRE (directly, as `spire-server entry
// delete` does) is refused at the check API within the feed's interval —
// its certificate was issued before — and stays refused when listed again.
func TestDaemonLivenessFeed(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td, time.Now())
	fe := fakeentry.Start(t)
	fe.Add(&types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/researcher/task/T-42"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/node"},
		Selectors: []*types.Selector{{Type: "agentid", Value: "task:T-42"}},
	})
	conn, err := grpc.NewClient(fe.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	svc := registrarserver.New(registrar.New(conn, td, nil),
		registrarserver.WithLiveness([]spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/verifier")}, 50*time.Millisecond))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	serve := func(l net.Listener) *grpc.Server {
		g := svc.AgentServer(ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/registrar")), ca.X509Bundle())
		go g.Serve(l)
		return g
	}
	g := serve(l)
	t.Cleanup(func() { g.Stop() })

	f := startWithCA(t, ca, `check_api {
  listen = "127.0.0.1:0"
}
liveness {
  registrars    = ["`+addr+`"]
  registrar_ids = ["spiffe://example.org/registrar"]
  max_staleness = "1s"
}
`, "")
	cert := f.taskCert(t, "kb:read")
	if out := f.check(t, cert, "GET", "/kb/doc"); out["allow"] != true {
		t.Fatalf("live task: %v", out)
	}

	// SPIRE fails: the registrar ends the stream, the verifier keeps
	// reconnecting; the view goes stale and task peers are refused.
	fe.Fail(errors.New("datastore down"))
	waitFor(t, func() bool { return f.check(t, cert, "GET", "/kb/doc")["deny_code"] == "liveness_unknown" })
	fe.Fail(nil)
	waitFor(t, func() bool { return f.check(t, cert, "GET", "/kb/doc")["allow"] == true })

	// The registrar killed and restarted on the same address.
	g.Stop()
	waitFor(t, func() bool { return f.check(t, cert, "GET", "/kb/doc")["deny_code"] == "liveness_unknown" })
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s not free again: %v", addr, err)
	}
	g = serve(l2)
	waitFor(t, func() bool { return f.check(t, cert, "GET", "/kb/doc")["allow"] == true })
	// Revoked in SPIRE: refused within a few feed intervals.
	fe.Delete(fe.Entries()[0].GetId())
	start := time.Now()
	waitFor(t, func() bool { return f.check(t, cert, "GET", "/kb/doc")["deny_code"] == "revoked" })
	t.Logf("revocation to deny: %v", time.Since(start).Round(time.Millisecond))
	// Listed again (a stale listing, or the task re-created under its ID):
	// still refused while the removal is remembered (30 s).
	fe.Add(&types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/researcher/task/T-42"},
		ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/node"},
		Selectors: []*types.Selector{{Type: "agentid", Value: "task:T-42"}},
	})
	time.Sleep(300 * time.Millisecond) // several feed intervals
	if got := f.check(t, cert, "GET", "/kb/doc")["deny_code"]; got != "revoked" {
		t.Fatalf("a revoked task listed again: deny_code %v, want revoked", got)
	}
}
