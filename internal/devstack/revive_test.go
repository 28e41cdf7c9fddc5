package devstack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestRevokedTaskRecreated: on the real SPIRE, a task is revoked through
// the registrar and then created again under the same task ID (IDs are the
// caller's). The credentials the revoked incarnation fetched — X.509 and
// JWT, with its claims — stay refused with "revoked", also 35 s after the
// revocation (the view used to forget a removal after 30 s and accept them
// again for the rest of their life: review F2), while the new
// incarnation's own credentials are allowed at once. Then a task revoked
// and re-created back to back (often within one feed interval, where no
// listing lacks it: the entry's new creation time tells).
func TestRevokedTaskRecreated(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	work := t.TempDir()
	client := newHTTPClient()
	conn, err := grpc.NewClient("unix://"+st.RegistrarOperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	registrar := registrarv1.NewRegistrarClient(conn)

	create := func(task, out string) {
		t.Helper()
		if _, err := agentid(t, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
			"--parent-id", st.NodeID, "--agent", "planner", "--task", task, "--model", "openai/gpt-4o",
			"--prompt-file", st.SamplePrompt, "--principal", "spiffe://example.org/user/alice", "--scope", "kb:read",
			"--ttl", "1h", "--output", out); err != nil {
			t.Fatal(err)
		}
	}
	revoke := func(task string) {
		t.Helper()
		if _, err := registrar.RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: "spiffe://example.org/agent/planner/task/" + task}); err != nil {
			t.Fatal(err)
		}
	}
	// fetchNew fetches the re-created task's credentials once its
	// X.509-SVID is not the old one (the agent may serve the old entry's
	// until its next sync). Its JWT-SVID may still be the old one: the
	// SPIRE agent caches JWT-SVIDs by SPIFFE ID and audience, not by
	// entry, and serves a cached one until half its lifetime is gone
	// (manager.FetchJWTSVID) — the revoked incarnation's token, with its
	// claims, which the verifier must refuse.
	fetchNew := func(taskFile string, old []credential) (jwt, x509 credential) {
		t.Helper()
		var creds []credential
		err := devstack.Poll(ctx, 20*time.Second, func() (bool, error) {
			creds = fetchCredentials(t, st, work, taskFile)
			if creds[1].body == old[1].body {
				return false, fmt.Errorf("%s: still the revoked incarnation's", creds[1].name)
			}
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return creds[0], creds[1]
	}
	// wantNewJWT: the re-created task's JWT-SVID is allowed if it is its
	// own, refused if it is the revoked incarnation's, served again.
	wantNewJWT := func(jwt credential, old []credential) string {
		if jwt.body == old[0].body {
			t.Logf("%s: the SPIRE agent served the revoked incarnation's cached JWT-SVID", jwt.name)
			return "revoked"
		}
		return "allow"
	}
	// apart waits until the old credentials, fetched before fetched, are
	// 3 s old: creation times are whole seconds (SPIRE rounds an entry's
	// created_at, and iat and NotBefore are truncated), so a credential
	// issued within about 2 s before the re-creation is not told apart
	// (docs/verifier.md).
	apart := func(fetched time.Time) {
		if d := 3*time.Second - time.Since(fetched); d > 0 {
			time.Sleep(d)
		}
	}
	await := func(what string, creds []credential, want string) {
		t.Helper()
		err := devstack.Poll(ctx, 10*time.Second, func() (bool, error) {
			for _, c := range creds {
				if got, err := decide(client, st.Verifier, c); err != nil || got != want {
					return false, fmt.Errorf("%s: %q %v", c.name, got, err)
				}
			}
			return true, nil
		})
		if err != nil {
			t.Errorf("%s: want %s: %v", what, want, err)
		}
	}

	create("RV-P", "RV-1.json")
	old := fetchCredentials(t, st, work, "RV-1.json")
	fetched := time.Now()
	await("live", old, "allow")
	revoke("RV-P")
	revoked := time.Now()
	await("revoked", old, "revoked")
	apart(fetched)
	create("RV-P", "RV-2.json")
	jwt, x509 := fetchNew("RV-2.json", old)
	await("re-created: the new incarnation's X.509-SVID", []credential{x509}, "allow")
	await("re-created: the new incarnation's JWT-SVID", []credential{jwt}, wantNewJWT(jwt, old))
	await("re-created: the revoked incarnation's credentials", old, "revoked")
	if d := 35*time.Second - time.Since(revoked); d > 0 {
		time.Sleep(d) // past the 30 s the view used to remember a removal
	}
	for _, c := range old {
		if got, err := decide(client, st.Verifier, c); err != nil || got != "revoked" {
			t.Errorf("%s of the revoked incarnation %v after the revocation: %q %v, want revoked", c.name, time.Since(revoked).Round(time.Second), got, err)
		}
	}
	if got, err := decide(client, st.Verifier, x509); err != nil || got != "allow" {
		t.Errorf("%s of the new incarnation: %q %v, want allow", x509.name, got, err)
	}

	// Back to back.
	create("RV-Q", "RQ-1.json")
	oldQ := fetchCredentials(t, st, work, "RQ-1.json")
	fetched = time.Now()
	await("second task live", oldQ, "allow")
	apart(fetched)
	revoke("RV-Q")
	create("RV-Q", "RQ-2.json")
	jwtQ, x509Q := fetchNew("RQ-2.json", oldQ)
	await("revoked and re-created back to back: new X.509-SVID", []credential{x509Q}, "allow")
	await("revoked and re-created back to back: new JWT-SVID", []credential{jwtQ}, wantNewJWT(jwtQ, oldQ))
	await("revoked and re-created back to back: old", oldQ, "revoked")
}
