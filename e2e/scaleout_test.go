package e2e

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/agentid/agentid/internal/spiretest"
)

// TestScaleOutSharedDatastore is the production topology on SPIRE's own
// engine: two SPIRE servers of one trust domain sharing one PostgreSQL
// datastore (SPIRE HA), the agentid composer on both, one agent with the
// agentid attestor attached to each. A task created through server 1 is
// issued with its claims, as X.509- and JWT-SVIDs, to a workload under the
// agent of server 2; both SVIDs verify against the bundle served by server
// 1; revoking the task through server 2 removes it everywhere.
func TestScaleOutSharedDatastore(t *testing.T) {
	begin := time.Now()
	step := func(what string) { t.Helper(); t.Logf("%6.2fs %s", time.Since(begin).Seconds(), what) }

	pg := startPostgres(t, "spire")
	step("postgres ready")

	agentid := spiretest.BuildCmd(t, "./cmd/agentid")
	composer := spiretest.BuildCmd(t, "./cmd/agentid-composer")
	attestor := spiretest.BuildCmd(t, "./cmd/agentid-attestor")
	step("agentid binaries built")
	serverOpts := spiretest.Options{
		DataStore: pg.SPIREDataStore(),
		// Each server's composer reads the task entries from its own
		// server's local API, i.e. from the shared datastore.
		Plugins: spiretest.PluginBlock(t, "CredentialComposer", "agentid", composer,
			`server_api_socket = "`+spiretest.SocketPlaceholder+`"`+"\ncache_ttl = \"1s\""),
	}
	dir := t.TempDir()
	policy := filepath.Join(dir, "issuance.hcl")
	if err := os.WriteFile(policy, []byte(issuancePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	// node starts a server on the shared datastore and one agent attached
	// to it, with its own manifest folder: one node of the cluster.
	node := func(name string) *stack {
		srv := spiretest.StartServer(t, serverOpts)
		manifests := filepath.Join(srv.Root, "tasks")
		if err := os.Mkdir(manifests, 0o750); err != nil {
			t.Fatal(err)
		}
		agent := srv.StartAgent(t, spiretest.AgentOptions{
			NodeName: name, // each server numbers its agents from 1: the datastore needs distinct names
			Plugins:  spiretest.PluginBlock(t, "WorkloadAttestor", "agentid", attestor, `manifest_dir = "`+manifests+`"`+sameUser),
		})
		return &stack{t: t, srv: srv, agent: agent, agentid: agentid, manifestDir: manifests, policy: policy, dir: dir}
	}

	n1 := node("node-a")
	step("server 1 and agent 1 healthy")
	// Server 1's own CA, before server 2 exists.
	ownCA := filepath.Join(dir, "server1-ca.pem")
	writeFile(t, ownCA, n1.srv.Run(t, "bundle", "show", "-format", "pem"))
	n2 := node("node-b")
	step("server 2 and agent 2 healthy")

	// Created through server 1, for a workload on agent 2's node: the
	// parent is agent 2's node alias, which only server 2 attested.
	taskID := "spiffe://example.org/agent/planner/task/HA-1"
	taskFile := filepath.Join(dir, "HA-1.json")
	n1.mustRun("task", "create", "--server-socket", n1.srv.SocketPath, "--policy", policy,
		"--agent", "planner", "--task", "HA-1", "--parent-id", n2.agent.NodeID.String(),
		"--model", "openai/gpt-4o", "--prompt-sha256", digest, "--scope", "kb:read", "--scope", "web:search",
		"--principal", "spiffe://example.org/user/alice", "--ttl", "1h", "--output", taskFile)
	step("task created through server 1")
	want, err := readRecord(t, taskFile)
	if err != nil {
		t.Fatal(err)
	}

	// Launched on node 2: X.509- and JWT-SVIDs with the task's claims.
	reps := n2.inspectAs(taskFile, "x", 30*time.Second)
	kinds := map[string]bool{}
	for _, r := range reps {
		if r.SPIFFEID != taskID {
			t.Fatalf("unexpected identity %s", r.SPIFFEID)
		}
		if got := claimsOf(t, r); !got.Equal(want) {
			t.Fatalf("%s claims %+v, want %+v", r.Kind, got, want)
		}
		kinds[r.Kind] = true
	}
	if !kinds["x509"] || !kinds["jwt"] {
		t.Fatalf("want an X.509-SVID and a JWT-SVID, got %v", kinds)
	}
	step("X.509- and JWT-SVIDs with the task claims on agent 2")

	checkSharedBundle(t, n1, n2, taskFile, ownCA)
	step("agent 2's SVIDs verified against server 1's bundle")

	// The entry is parented to node 2: the same launch on node 1 gets nothing.
	if _, err := n1.run("run", "--task-file", taskFile, "--manifest-dir", n1.manifestDir, "--",
		agentid, "svid", "inspect", "--socket", n1.agent.SocketPath); err == nil || !strings.Contains(err.Error(), "no identity issued") {
		t.Fatalf("the task launched on node 1: want no identity issued, got %v", err)
	}

	// Revoked through server 2: gone from node 2's Workload API and from
	// server 1's view of the datastore.
	out := n2.mustRun("task", "revoke", "--server-socket", n2.srv.SocketPath, taskID)
	if !strings.Contains(out, "Revoked "+taskID) {
		t.Fatalf("revoke output:\n%s", out)
	}
	step("task revoked through server 2")
	revoked := time.Now()
	deadline := revoked.Add(30 * time.Second)
	for {
		_, err := n2.run("run", "--task-file", taskFile, "--manifest-dir", n2.manifestDir, "--",
			agentid, "svid", "inspect", "--json", "--socket", n2.agent.SocketPath, "--audience", "x")
		if err != nil && strings.Contains(err.Error(), "no identity issued") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revoked task still gets an identity on node 2 after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	step("no identity issued on agent 2 any more")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := entryv1.NewEntryClient(n1.srv.Dial(t)).ListEntries(ctx, &entryv1.ListEntriesRequest{
		Filter: &entryv1.ListEntriesRequest_Filter{BySpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/planner/task/HA-1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 0 {
		t.Fatalf("server 1 still lists %d entries for the revoked task: %v", len(resp.Entries), resp.Entries)
	}
	if out := n1.mustRun("task", "list", "--server-socket", n1.srv.SocketPath); strings.Contains(out, taskID) {
		t.Fatalf("server 1 still lists the revoked task:\n%s", out)
	}
	step("server 1 lists no entry for the task")
}

// checkSharedBundle fetches the task's X.509- and JWT-SVIDs on node 2 with
// spire-agent and verifies them with `agentid svid verify` against the
// bundle that server 1 serves: each HA server signs with its own CA and JWT
// key, both published in the shared datastore's bundle. The X.509-SVID
// does not verify against server 1's own CA (its bundle before server 2
// started).
func checkSharedBundle(t *testing.T, n1, n2 *stack, taskFile, ownCA string) {
	t.Helper()
	spireAgent := filepath.Join(spiretest.Bin(t), "spire-agent")
	svidDir := filepath.Join(n2.dir, "svid")
	if err := os.Mkdir(svidDir, 0o700); err != nil {
		t.Fatal(err)
	}
	n2.mustRun("run", "--task-file", taskFile, "--manifest-dir", n2.manifestDir, "--",
		spireAgent, "api", "fetch", "x509", "-socketPath", n2.agent.SocketPath, "-write", svidDir)
	out := n2.mustRun("run", "--task-file", taskFile, "--manifest-dir", n2.manifestDir, "--",
		spireAgent, "api", "fetch", "jwt", "-audience", "x", "-socketPath", n2.agent.SocketPath)
	jwtFile := filepath.Join(n2.dir, "svid.jwt")
	writeFile(t, jwtFile, jwtFromFetch(t, out))
	x509File := filepath.Join(svidDir, "svid.0.pem")

	// Server 1's bundle, from the shared datastore (the server caches it
	// for a moment: poll until it holds server 2's authorities).
	pemBundle := filepath.Join(n1.dir, "server1-bundle.pem")
	jsonBundle := filepath.Join(n1.dir, "server1-bundle.json")
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 1; ; attempt++ {
		writeFile(t, pemBundle, n1.srv.Run(t, "bundle", "show", "-format", "pem"))
		writeFile(t, jsonBundle, n1.srv.Run(t, "bundle", "show", "-format", "spiffe"))
		_, errX := n1.run("svid", "verify", "--bundle", pemBundle, x509File)
		_, errJ := n1.run("svid", "verify", "--bundle", jsonBundle, "--audience", "x", jwtFile)
		if errX == nil && errJ == nil {
			t.Logf("node 2's SVIDs verified against server 1's bundle (attempt %d)", attempt)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2's SVIDs do not verify against server 1's bundle:\nX.509: %v\nJWT: %v", errX, errJ)
		}
		time.Sleep(200 * time.Millisecond)
	}
	own, shared := countCerts(t, ownCA), countCerts(t, pemBundle)
	t.Logf("server 1's bundle: %d X.509 authority(ies) before server 2 started, %d after", own, shared)
	if shared <= own {
		t.Errorf("server 2 added no X.509 authority to the shared bundle (%d before, %d after)", own, shared)
	}
	if _, err := n1.run("svid", "verify", "--bundle", ownCA, x509File); err == nil {
		t.Errorf("node 2's X.509-SVID verifies against server 1's own CA: the servers share one CA key")
	} else {
		t.Logf("as expected, node 2's X.509-SVID is not signed by server 1's CA: %s", lastLine(err.Error()))
	}
}

// jwtFromFetch picks the token out of `spire-agent api fetch jwt` output:
// "token(<spiffe id>):" then the token on the next line.
func jwtFromFetch(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "token(") && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1]) + "\n"
		}
	}
	t.Fatalf("no token in `spire-agent api fetch jwt` output:\n%s", out)
	return ""
}

func countCerts(t *testing.T, path string) int {
	t.Helper()
	rest, n := mustRead(t, path), 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return n
		}
		if b.Type == "CERTIFICATE" {
			n++
		}
	}
}
