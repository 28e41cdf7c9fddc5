package workloadattestor_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSPIRE loads agentid-attestor into a real SPIRE 1.13.3 agent (with
// plugin_checksum) and checks that a process with a manifest gets its task's
// SVID through the Workload API, and loses it when the manifest goes.
// The workload is this test process: its manifest is written by the
// launcher's own code (Launch.Prepare), as `agentid run` does before exec.
// The process is its own launcher, hence allow_same_user (dev mode); the
// attestor's refusal of such processes is tested in package attestor and
// on the real SPIRE in e2e.TestAttestEscape.
func TestSPIRE(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.Options{})
	bin := spiretest.BuildCmd(t, "./cmd/agentid-attestor")
	dir := manifestDir(t)
	agent := srv.StartAgent(t, spiretest.AgentOptions{
		Plugins: spiretest.PluginBlock(t, "WorkloadAttestor", svid.DefaultSelectorType, bin,
			fmt.Sprintf("manifest_dir = %q\ninherit_depth = 1\nallow_same_user = true\n", dir)),
	})

	claims := testClaims()
	claims.Deadline = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	id := fmt.Sprintf("spiffe://%s/agent/%s/task/%s", srv.TrustDomain, claims.Agent, claims.Task)
	var selectors []string
	for _, v := range claims.Selectors() {
		selectors = append(selectors, svid.DefaultSelectorType+":"+v)
	}
	srv.CreateEntry(t, id, agent.NodeID.String(), selectors...)

	self, _ := os.Executable()
	path, err := (&attestor.Launch{Dir: dir, Claims: claims, Incarnation: testIncarnation, Path: self}).Prepare()
	if err != nil {
		t.Fatal(err)
	}
	got := agent.WaitX509SVID(t, 20*time.Second, func(s *x509svid.SVID) bool { return s.ID.String() == id })
	t.Logf("SVID %s for pid %d", got.ID, os.Getpid())

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s, err := agent.FetchX509SVID(ctx); status.Code(err) != codes.PermissionDenied {
		t.Errorf("without the manifest: %v, %v; want PermissionDenied", s, err)
	}
	log, _ := os.ReadFile(agent.LogPath)
	if !strings.Contains(string(log), "manifest_dir="+dir) || strings.Contains(string(log), "Refusing agentid task manifest") {
		t.Errorf("agent log: want the plugin's Configured line and no refusal:\n%s", log)
	}
}

// TestSPIREMaxExeBytes: on a real SPIRE 1.13.3 agent, an executable over
// max_exe_bytes is not hashed: the process gets the entry of its task
// without an executable pin, not the one pinned to its binary's digest,
// and the agent log names the limit. (With the limit above the test
// binary's size, the pinned entry is the one the process gets.)
func TestSPIREMaxExeBytes(t *testing.T) {
	srv := spiretest.StartServer(t, spiretest.Options{})
	bin := spiretest.BuildCmd(t, "./cmd/agentid-attestor")
	dir := manifestDir(t)
	agent := srv.StartAgent(t, spiretest.AgentOptions{
		Plugins: spiretest.PluginBlock(t, "WorkloadAttestor", svid.DefaultSelectorType, bin,
			fmt.Sprintf("manifest_dir = %q\nallow_same_user = true\nmax_exe_bytes = 1024\n", dir)),
	})
	claims := testClaims()
	claims.Deadline = time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var selectors []string
	for _, v := range claims.Selectors() {
		selectors = append(selectors, svid.DefaultSelectorType+":"+v)
	}
	self, _ := os.Executable()
	sum, err := attestor.ExecutableDigest(self)
	if err != nil {
		t.Fatal(err)
	}
	pinnedID := fmt.Sprintf("spiffe://%s/agent/%s/task/pinned", srv.TrustDomain, claims.Agent)
	plainID := fmt.Sprintf("spiffe://%s/agent/%s/task/%s", srv.TrustDomain, claims.Agent, claims.Task)
	// The pinned entry first: once the later one reaches the agent, so has it.
	srv.CreateEntry(t, pinnedID, agent.NodeID.String(),
		append(slices.Clone(selectors), svid.DefaultSelectorType+":"+svid.ScopedExeSelector(claims.Task, sum))...)
	srv.CreateEntry(t, plainID, agent.NodeID.String(), selectors...)
	if _, err := (&attestor.Launch{Dir: dir, Claims: claims, Incarnation: testIncarnation, Path: self}).Prepare(); err != nil {
		t.Fatal(err)
	}
	agent.WaitX509SVID(t, 20*time.Second, func(s *x509svid.SVID) bool { return s.ID.String() == plainID })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(agent.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.ID.String() == pinnedID {
			t.Errorf("got the entry pinned to the executable's digest although the executable is over max_exe_bytes")
		}
	}
	log, _ := os.ReadFile(agent.LogPath)
	if !strings.Contains(string(log), "max_exe_bytes=1024") || !strings.Contains(string(log), "over max_exe_bytes 1024") {
		t.Errorf("agent log: want the limit and the skipped digest:\n%s", log)
	}
}
