package daemon_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/fakeentry"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/registrar"
	registrarserver "github.com/agentid/agentid/registrar/server"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/daemon"
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
	// the certificate, issued before the removal, is still refused
	// (remember_revoked, 1 h; the fake lists no creation times).
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

// liveness { remember_revoked } sets how long the view remembers a
// revocation (verifier.LivenessView.RememberRemoved; default 1 h).
func TestLivenessConfigRememberRevoked(t *testing.T) {
	head := "trust_domain = \"example.org\"\npolicy_dir = \"p\"\nworkload_api {\n socket = \"/s\"\n}\ncheck_api {\n listen = \":0\"\n}\n"
	block := func(extra string) string {
		return head + "liveness {\n registrars = [\"127.0.0.1:1\"]\n registrar_ids = [\"spiffe://example.org/registrar\"]\n" + extra + "}\n"
	}
	for src, want := range map[string]time.Duration{block(""): 0, block(" remember_revoked = \"2h\"\n"): 2 * time.Hour} {
		cfg, err := daemon.ParseConfig([]byte(src), "v.hcl")
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Liveness.RememberRevoked; got != want {
			t.Errorf("remember_revoked %v, want %v (0: the view's default, %v)", got, want, verifier.DefaultRememberRemoved)
		}
	}
	for _, bad := range []string{"-1h", "forever", "0s"} {
		if _, err := daemon.ParseConfig([]byte(block(" remember_revoked = \""+bad+"\"\n")), "v.hcl"); err == nil || !strings.Contains(err.Error(), "liveness.remember_revoked") {
			t.Errorf("remember_revoked = %q: %v", bad, err)
		}
	}
}

// A liveness message's creation times pair with its IDs: none (an older
// registrar: unknown), one per ID (0: unknown), or the message is refused
// (the verifier reconnects for a full message).
func TestLivenessMessageCreationTimes(t *testing.T) {
	ts, err := daemon.LiveTasks([]string{"a", "b"}, nil)
	if err != nil || len(ts) != 2 || !ts[0].Created.IsZero() || !ts[1].Created.IsZero() {
		t.Fatalf("without creation times: %v %v", ts, err)
	}
	ts, err = daemon.LiveTasks([]string{"a", "b"}, []int64{1796628086, 0})
	if err != nil || !ts[0].Created.Equal(time.Unix(1796628086, 0)) || !ts[1].Created.IsZero() {
		t.Fatalf("with creation times: %v %v", ts, err)
	}
	if _, err := daemon.LiveTasks([]string{"a", "b"}, []int64{1}); err == nil {
		t.Fatal("one creation time for two tasks accepted")
	}
}
