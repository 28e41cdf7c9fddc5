package e2e

import (
	"bytes"
	"context"
	"fmt"
	agentidattestor "github.com/agentid/agentid/attestor"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkCreateToSVID measures create-to-SVID propagation on a real
// SPIRE as `agentid dev` runs it (events_based_cache, 1 s cache reload and
// agent sync, the composer with cache_ttl 1s, the agentid attestor): for
// each size of AGENTID_SCALE_SIZES (default 1000,10000) SPIRE is filled
// with that many live tasks on the agent's node (the registrar's layout,
// through BatchCreateEntry: the worst case, one node holding the fleet),
// left to settle, and then AGENTID_SCALE_PROBES tasks (default 50) are, one
// after the other, created with Registrar.Create and launched with
// `agentid run --task-file` as a workload (e2e/testdata/svidwait) that
// polls the Workload API every 20 ms until it holds the task's X.509-SVID.
// It reports, per size, the p50/p99 of the time from the create call to
// the SVID in the workload's hands (the launch included), and the RSS of
// the SPIRE agent and server. AGENTID_SCALE_DATASTORE=postgres runs the
// server on PostgreSQL; AGENTID_SCALE_ANALYZE=1 runs SQLite's ANALYZE
// during the fill (fillStats). Run it once:
//
//	go test -run '^$' -bench BenchmarkCreateToSVID -benchtime 1x -timeout 90m ./e2e/
func BenchmarkCreateToSVID(b *testing.B) {
	sizes := scaleSizes(b)
	probes := 50
	if s := os.Getenv("AGENTID_SCALE_PROBES"); s != "" {
		if n, err := strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("AGENTID_SCALE_PROBES: %q is not a positive count", s)
		} else {
			probes = n
		}
	}
	agentidCLI := spiretest.BuildCmd(b, "./cmd/agentid")
	waiter := spiretest.BuildCmd(b, "./e2e/testdata/svidwait")
	composer := spiretest.BuildCmd(b, "./cmd/agentid-composer")
	attestor := spiretest.BuildCmd(b, "./cmd/agentid-attestor")
	for b.Loop() {
		opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: true,
			Plugins: spiretest.PluginBlock(b, "CredentialComposer", "agentid", composer,
				`server_api_socket = "`+spiretest.SocketPlaceholder+`"`+"\ncache_ttl = \"1s\"")}
		pg := scalePostgres(b, &opts)
		srv := spiretest.StartServer(b, opts)
		manifests := filepath.Join(srv.Root, "tasks")
		if err := os.Mkdir(manifests, 0o750); err != nil {
			b.Fatal(err)
		}
		agent := srv.StartAgent(b, spiretest.AgentOptions{LogLevel: "WARN",
			Plugins: spiretest.PluginBlock(b, "WorkloadAttestor", "agentid", attestor, `manifest_dir = "`+manifests+`"`+sameUser)})
		conn := srv.Dial(b)
		pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
		if err != nil {
			b.Fatal(err)
		}
		r := registrar.New(conn, srv.TrustDomain, pol)
		client := entryv1.NewEntryClient(conn)
		ctx := context.Background()
		deadline := time.Unix(time.Now().Add(3*time.Hour).Unix(), 0).UTC()
		dir := b.TempDir()
		n := 0
		// probe creates one task, launches its workload and returns the
		// time from the create call to the SVID, and the create's own.
		probe := func() (time.Duration, time.Duration) {
			n++
			start := time.Now()
			task, err := r.Create(ctx, registrar.Request{Agent: "planner", Task: fmt.Sprintf("P-%d", n), Model: "openai/gpt-4o",
				Prompt: digest, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", TTL: time.Hour,
				ParentID: agent.NodeID.String()})
			if err != nil {
				b.Fatal(err)
			}
			created := time.Since(start)
			file := filepath.Join(dir, fmt.Sprintf("P-%d.json", n))
			rec, _ := agentidattestor.TaskRecord{Incarnation: task.Incarnation, Claims: task.Claims}.MarshalJSON()
			if err := os.WriteFile(file, rec, 0o600); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(agentidCLI, "run", "--task-file", file, "--manifest-dir", manifests, "--exe-digest=false", "--",
				waiter, "-socket", agent.SocketPath, "-id", task.ID.String(), "-timeout", "5m")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				b.Fatalf("task %s: the workload got no SVID: %v\n%s", task.ID, err, errb.String())
			}
			f := strings.Fields(out.String())
			if len(f) != 2 {
				b.Fatalf("svidwait: %q", out.String())
			}
			got, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				b.Fatalf("svidwait: %q", out.String())
			}
			return time.Unix(0, got).Sub(start), created
		}
		live := 0
		for _, size := range sizes {
			if live < size {
				fillStart := time.Now()
				fillStats(ctx, b, r, client, agent.NodeID, deadline, live, size, srv, pg)
				b.Logf("%s: filled %d tasks in %v; load %s", datastoreName(), size-live, time.Since(fillStart).Round(time.Second), loadAvg())
				live = size
			}
			// Let the server's cache and the agent's sync take the fill
			// in, then one probe outside the figures.
			time.Sleep(10 * time.Second)
			probe()
			var prop, creates []time.Duration
			for range probes {
				p, c := probe()
				prop = append(prop, p)
				creates = append(creates, c)
			}
			live += probes + 1
			p50, p99 := pct(prop, 50), pct(prop, 99) // sorts prop
			agentRSS, serverRSS := float64(rssKiB(b, agent.Pid()))/1024, float64(rssKiB(b, srv.Pid()))/1024
			b.ReportMetric(float64(p50.Milliseconds()), fmt.Sprintf("p50-ms@%d", size))
			b.ReportMetric(float64(p99.Milliseconds()), fmt.Sprintf("p99-ms@%d", size))
			b.ReportMetric(agentRSS, fmt.Sprintf("agent-MiB@%d", size))
			b.ReportMetric(serverRSS, fmt.Sprintf("server-MiB@%d", size))
			b.Logf("%s, %d live tasks on the agent's node: create-to-SVID p50 %v, p99 %v (min %v, max %v) over %d tasks; the create alone p50 %v; agent RSS %.0f MiB, server RSS %.0f MiB, datastore %.1f MiB; load %s",
				datastoreName(), size, p50, p99, prop[0], prop[len(prop)-1], probes, pct(creates, 50),
				agentRSS, serverRSS, float64(datastoreBytes(b, srv, pg))/(1<<20), loadAvg())
		}
	}
}
