package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// TestAgentSignsOnlyRunningTasks: a SPIRE agent treats an entry as wanted
// (and signs its X.509-SVID at every sync, past x509_svid_cache_max_size)
// when any one of its selectors matches a running workload. With the v1
// layout every task of a fleet shares model, prompt, scope, principal and
// depth selectors with the one task that runs, so the agent signs them
// all; with the task-scoped layout only the running task's entry is
// wanted, and the agent signs at most its cache size more. 200 tasks on
// one node, one of them running, x509_svid_cache_max_size = 10, on a real
// SPIRE 1.13.3: "Creating X509-SVID" lines in the agent's log.
func TestAgentSignsOnlyRunningTasks(t *testing.T) {
	const tasks, cacheSize = 200, 10
	att := spiretest.BuildCmd(t, "./cmd/agentid-attestor")
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	signed := map[string]int{}
	for _, layout := range []struct {
		name string
		sels func(svid.Claims) []string
	}{
		{"v1", svid.Claims.Selectors},
		{"task-scoped", svid.Claims.ScopedSelectors},
	} {
		t.Run(layout.name, func(t *testing.T) {
			srv := spiretest.StartServer(t, spiretest.Options{LogLevel: "INFO"})
			dir := filepath.Join(srv.Root, "tasks")
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			agent := srv.StartAgent(t, spiretest.AgentOptions{LogLevel: "INFO",
				Config:  fmt.Sprintf("x509_svid_cache_max_size = %d", cacheSize),
				Plugins: spiretest.PluginBlock(t, "WorkloadAttestor", "agentid", att, `manifest_dir = "`+dir+`"`+sameUser)})
			deadline := time.Unix(time.Now().Add(time.Hour).Unix(), 0).UTC()
			var batch []*types.Entry
			for i := range tasks {
				c := scaleClaims(i)
				c.Deadline = deadline
				e := &types.Entry{SpiffeId: &types.SPIFFEID{TrustDomain: "example.org", Path: fmt.Sprintf("/agent/planner/task/S-%d", i)},
					ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: agent.NodeID.Path()},
					ExpiresAt: deadline.Unix(), X509SvidTtl: 3600, JwtSvidTtl: 300}
				for _, v := range layout.sels(c) {
					e.Selectors = append(e.Selectors, &types.Selector{Type: "agentid", Value: v})
				}
				batch = append(batch, e)
			}
			resp, err := entryv1.NewEntryClient(srv.Dial(t)).BatchCreateEntry(context.Background(), &entryv1.BatchCreateEntryRequest{Entries: batch})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetResults() {
				if codes.Code(r.GetStatus().GetCode()) != codes.OK {
					t.Fatalf("create: %v", r.GetStatus())
				}
			}
			// This process runs as task S-0 and watches its X.509-SVIDs
			// (a subscriber, as a workload using go-spiffe's X509Source).
			c := scaleClaims(0)
			c.Deadline = deadline
			if _, err := (&attestor.Launch{Dir: dir, Claims: c, Incarnation: handIncarnation, Path: self}).Prepare(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(agent.Addr())))
			if err != nil {
				t.Fatal(err)
			}
			defer source.Close()
			if s, err := source.GetX509SVID(); err != nil || s.ID.Path() != "/agent/planner/task/S-0" {
				t.Fatalf("SVID %v, %v", s, err)
			}
			time.Sleep(6 * time.Second) // several syncs of 1 s
			b, _ := os.ReadFile(agent.LogPath)
			signed[layout.name] = strings.Count(string(b), "Creating X509-SVID")
			t.Logf("%s: the agent signed %d X.509-SVIDs for %d tasks on its node, one running (cache size %d)", layout.name, signed[layout.name], tasks, cacheSize)
		})
	}
	if n := signed["task-scoped"]; n > 2*cacheSize {
		t.Errorf("task-scoped layout: %d X.509-SVIDs signed, want at most %d (the running task and the cache)", n, 2*cacheSize)
	}
	// The control: the same measurement sees the v1 layout's churn (201
	// here), so the bound above is not met by accident.
	if n := signed["v1"]; n < tasks/2 {
		t.Errorf("v1 layout: only %d X.509-SVIDs signed, want most of %d: the measurement does not see the churn it is meant to", n, tasks)
	}
}
