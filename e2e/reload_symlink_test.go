package e2e

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestPolicyDirSymlinkFlipOnRealSPIRE: agentid-verifier on real SPIRE with
// policy_dir a symbolic link to a release directory, deployed as usual
// (a new link renamed over the old one). The flip reloads the policy
// without SIGHUP, and an edit of the release then in force reloads it too
// (the watch moved to it). Before, the watch stayed on the first release.
func TestPolicyDirSymlinkFlipOnRealSPIRE(t *testing.T) {
	s := newStack(t)
	releases := filepath.Join(s.dir, "releases")
	r1, r2 := filepath.Join(releases, "1"), filepath.Join(releases, "2")
	for _, r := range []string{r1, r2} {
		if err := os.MkdirAll(r, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(r1, "kb.hcl"), readPolicy("/kb/**"))
	writeFile(t, filepath.Join(r2, "kb.hcl"), readPolicy("/docs/**"))
	policyDir := filepath.Join(s.dir, "policies")
	if err := os.Symlink("releases/1", policyDir); err != nil {
		t.Fatal(err)
	}

	vbin := s.buildDaemon("./cmd/agentid-verifier")
	s.srv.CreateEntry(t, "spiffe://example.org/verifier", s.agent.NodeID.String(), "unix:path:"+vbin)
	checkAddr, metricsAddr := "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:"+strconv.Itoa(freePort(t))
	cfg := filepath.Join(s.dir, "verifier.hcl")
	writeFile(t, cfg, `
trust_domain = "example.org"
policy_dir   = "`+policyDir+`"
workload_api { socket = "`+s.agent.SocketPath+`" }
check_api { listen = "`+checkAddr+`" }
metrics { listen = "`+metricsAddr+`" }
`)
	startDaemon(t, vbin, "-config", cfg)
	waitTCP(t, checkAddr, 30*time.Second)
	waitTCP(t, metricsAddr, 30*time.Second)

	id := s.selfTask(t, rootClaims("SL-1"), 0, 0)
	leaf := s.agent.WaitX509SVID(t, 30*time.Second, func(v *x509svid.SVID) bool { return v.ID.String() == id })
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificates[0].Raw}))
	allowed := func(path string) bool { return checkAPI(t, checkAddr, cert, "GET", path)["allow"] == true }
	// Run sets the watch up right after the listeners serve, long before
	// the task's SVID above was issued (seconds).
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("release 1 does not allow GET /kb/doc", func() bool { return allowed("/kb/doc") })
	oks := scrape(t, metricsAddr).reloads("ok")

	tmp := filepath.Join(s.dir, "policies.tmp")
	if err := os.Symlink("releases/2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policyDir); err != nil {
		t.Fatal(err)
	}
	waitUntil("the flip to release 2 was not loaded", func() bool { return !allowed("/kb/doc") && allowed("/docs/readme") })
	waitMetrics(t, metricsAddr, "flip", func(m metrics) bool { return m.reloads("ok") > oks })

	writeFile(t, filepath.Join(r2, "kb.hcl"), readPolicy("/wiki/**"))
	waitUntil("an edit of release 2 (in force) was not loaded", func() bool { return allowed("/wiki/page") && !allowed("/docs/readme") })
}
