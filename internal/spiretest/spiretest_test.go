package spiretest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentid/agentid/internal/spiretest"
)

const wait = 15 * time.Second

// TestServerAndAgent walks one server and agent through what other
// packages' integration tests rely on: entries, X.509- and JWT-SVIDs, a
// restart, the entry API over Dial and withdrawal of an identity.
func TestServerAndAgent(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.Options{TrustDomain: "td.test"})
	agent := srv.StartAgent(t, spiretest.AgentOptions{})
	if want := "spiffe://td.test/agent/node-1"; agent.NodeID.String() != want {
		t.Fatalf("NodeID = %s, want %s", agent.NodeID, want)
	}
	me := spiffeid.RequireFromString("spiffe://td.test/workload/me")
	other := spiffeid.RequireFromString("spiffe://td.test/workload/other")
	// The entry for another uid is created first: once the agent serves
	// "me", it has "other" too, and must not have issued it to this process.
	srv.CreateEntry(t, other.String(), agent.NodeID.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()+1))
	meEntry := srv.CreateEntry(t, me.String(), agent.NodeID.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()))

	start := time.Now()
	svid := agent.WaitX509SVID(t, wait, hasID(me))
	t.Logf("first X.509-SVID %v after the entry was created", time.Since(start).Round(time.Millisecond))
	checkOnlyIdentity(t, agent, me)
	if !svid.Certificates[0].NotAfter.After(time.Now().Add(50 * time.Minute)) {
		t.Errorf("X.509-SVID expires at %v, want the 1h default TTL", svid.Certificates[0].NotAfter)
	}

	jwt := agent.WaitJWTSVID(t, wait, "svc", nil)
	if jwt.ID != me || !slices.Equal(jwt.Audience, []string{"svc"}) {
		t.Errorf("JWT-SVID is %s for %v, want %s for [svc]", jwt.ID, jwt.Audience, me)
	}

	checkEntryAPI(t, srv, agent, meEntry)

	start = time.Now()
	agent.Restart(t)
	agent.WaitX509SVID(t, wait, hasID(me))
	t.Logf("X.509-SVID served again %v after the restart began", time.Since(start).Round(time.Millisecond))
	if log, _ := os.ReadFile(agent.LogPath); !strings.Contains(string(log), `msg="SVID loaded"`) {
		t.Errorf("the restarted agent did not load its SVID from its data folder")
	}

	srv.Run(t, "entry", "delete", "-entryID", meEntry)
	start = time.Now()
	err := agent.WaitNoIdentity(t, wait)
	t.Logf("identity withdrawn %v after the entry was deleted: %v", time.Since(start).Round(time.Millisecond), err)
	if !strings.Contains(err.Error(), "no identity issued") {
		t.Errorf("error = %q, want it to say %q", err, "no identity issued")
	}
}

func hasID(id spiffeid.ID) func(*x509svid.SVID) bool {
	return func(s *x509svid.SVID) bool { return s.ID == id }
}

// checkOnlyIdentity checks that the Workload API gives this process
// exactly the identity want.
func checkOnlyIdentity(t *testing.T, agent *spiretest.Agent, want spiffeid.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(agent.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range svids {
		ids = append(ids, s.ID.String())
	}
	if !slices.Equal(ids, []string{want.String()}) {
		t.Errorf("X.509-SVIDs %v, want only %s", ids, want)
	}
}

// checkEntryAPI reads the entry back through Dial and the CLI through Run.
func checkEntryAPI(t *testing.T, srv *spiretest.Server, agent *spiretest.Agent, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entry, err := entryv1.NewEntryClient(srv.Dial(t)).GetEntry(ctx, &entryv1.GetEntryRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := entry.ParentId; got.TrustDomain != "td.test" || got.Path != agent.NodeID.Path() {
		t.Errorf("entry parent = %v, want %s", got, agent.NodeID)
	}
	if out := srv.Run(t, "entry", "show", "-entryID", id); !strings.Contains(out, "spiffe://td.test/workload/me") {
		t.Errorf("entry show:\n%s", out)
	}
}

// TestNoEntry checks the Workload API's answer to a caller without any
// entry: PermissionDenied, "no identity issued".
func TestNoEntry(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.Options{})
	agent := srv.StartAgent(t, spiretest.AgentOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := agent.FetchX509SVID(ctx)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no identity issued") {
		t.Errorf("FetchX509SVID error = %v, want PermissionDenied: no identity issued", err)
	}
	_, err = agent.FetchJWTSVID(ctx, "svc")
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("FetchJWTSVID error = %v, want PermissionDenied", err)
	}
}

func TestPluginBlock(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "plugin")
	if err := os.WriteFile(bin, []byte("hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	got := spiretest.PluginBlock(t, "WorkloadAttestor", "agentid", bin, "manifest_dir = \"/run/x\"\nnested {\n    a = 1\n}")
	want := `WorkloadAttestor "agentid" {
    plugin_cmd = "` + bin + `"
    plugin_checksum = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    plugin_data {
        manifest_dir = "/run/x"
        nested {
            a = 1
        }
    }
}
`
	if got != want {
		t.Errorf("PluginBlock =\n%s\nwant\n%s", got, want)
	}
}

// TestBuildCmd builds a command of this repository and caches it.
func TestBuildCmd(t *testing.T) {
	path := spiretest.BuildCmd(t, "./cmd/agentid")
	if !filepath.IsAbs(path) {
		t.Errorf("BuildCmd path %q is not absolute", path)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("BuildCmd result %q: %v", path, err)
	}
	if again := spiretest.BuildCmd(t, "./cmd/agentid"); again != path {
		t.Errorf("second BuildCmd = %q, want the cached %q", again, path)
	}
}

// TestDataStoreAndNodeName: Options.DataStore replaces the default sqlite
// database and AgentOptions.NodeName the default node alias.
func TestDataStoreAndNodeName(t *testing.T) {
	db := filepath.Join(t.TempDir(), "custom.sqlite3")
	srv := spiretest.StartServer(t, spiretest.Options{
		DataStore: "database_type = \"sqlite3\"\nconnection_string = \"" + db + "\"",
	})
	agent := srv.StartAgent(t, spiretest.AgentOptions{NodeName: "edge-a"})
	if want := "spiffe://example.org/agent/edge-a"; agent.NodeID.String() != want {
		t.Fatalf("NodeID = %s, want %s", agent.NodeID, want)
	}
	if _, err := os.Stat(db); err != nil {
		t.Fatalf("the server did not use the configured datastore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srv.Dir, "data", "datastore.sqlite3")); !os.IsNotExist(err) {
		t.Errorf("the default datastore was created too: %v", err)
	}
	me := spiffeid.RequireFromString("spiffe://example.org/workload/me")
	srv.CreateEntry(t, me.String(), agent.NodeID.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()))
	agent.WaitX509SVID(t, wait, hasID(me))
}
