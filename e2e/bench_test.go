package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// BenchmarkRegistrarCreate creates tasks through the registrar library
// against a real SPIRE server (sqlite datastore): tasks/s.
func BenchmarkRegistrarCreate(b *testing.B) {
	srv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN"})
	pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	if err != nil {
		b.Fatal(err)
	}
	r := registrar.New(srv.Dial(b), srv.TrustDomain, pol)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_, err := r.Create(ctx, registrar.Request{
			Agent: "planner", Task: fmt.Sprintf("B-%d", i), Model: "openai/gpt-4o", Prompt: digest,
			Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", TTL: time.Hour,
			ParentID: "spiffe://example.org/agent/node-1",
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
}

// BenchmarkJWTMint mints JWT-SVIDs through the Workload API (a new
// audience each time, so the agent cannot serve them from its cache) from
// two SPIRE deployments started side by side: "plain" without the composer,
// "composer" with it, for a task identity. Both agents load the agentid
// attestor, so the difference is the composer's cost. Compare the svids/s
// of the two as a ratio within one run.
func BenchmarkJWTMint(b *testing.B) {
	composer := spiretest.BuildCmd(b, "./cmd/agentid-composer")
	att := spiretest.BuildCmd(b, "./cmd/agentid-attestor")
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)

	plainSrv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN"})
	plain := plainSrv.StartAgent(b, spiretest.AgentOptions{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "WorkloadAttestor", "agentid", att, `manifest_dir = "`+mkTaskDir(b, plainSrv)+`"`)})
	plainSrv.CreateEntry(b, "spiffe://example.org/bench", plain.NodeID.String(), "unix:path:"+self)

	srv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "CredentialComposer", "agentid", composer, `server_api_socket = "`+spiretest.SocketPlaceholder+`"`)})
	dir := mkTaskDir(b, srv)
	agent := srv.StartAgent(b, spiretest.AgentOptions{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "WorkloadAttestor", "agentid", att, `manifest_dir = "`+dir+`"`)})
	pol, _ := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	task, err := registrar.New(srv.Dial(b), srv.TrustDomain, pol).Create(context.Background(), registrar.Request{
		Agent: "planner", Task: "bench", Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"},
		Principal: "spiffe://example.org/user/alice", TTL: time.Hour, ParentID: agent.NodeID.String(),
	})
	if err != nil {
		b.Fatal(err)
	}
	// This benchmark process becomes the task, as `agentid run` would make it.
	if _, err := (&attestor.Launch{Dir: dir, Claims: task.Claims, Path: self}).Prepare(); err != nil {
		b.Fatal(err)
	}
	s := agent.WaitJWTSVID(b, 30*time.Second, "warmup", func(*jwtSVID) bool { return true })
	if _, found, err := svid.FromJWTSVID(s); !found || err != nil {
		b.Fatalf("the task's JWT-SVID carries no claims: %v", err)
	}
	plain.WaitJWTSVID(b, 30*time.Second, "warmup", func(*jwtSVID) bool { return true })

	b.Run("plain", func(b *testing.B) { mint(b, plain) })
	b.Run("composer", func(b *testing.B) { mint(b, agent) })
	// The ratio: the two alternate in rounds of the same number of mints
	// (the order flipped every round) and the median of the per-round
	// ratios is reported, so that load from other processes on a shared
	// machine hits a round, not one side.
	b.Run("ratio", func(b *testing.B) {
		const perRound = 40
		var ratios []float64
		round := 0
		for b.Loop() {
			var took [2]time.Duration
			for k := range 2 {
				side := (k + round) % 2
				took[side] = mintRound(b, []*spiretest.Agent{plain, agent}[side], perRound)
			}
			round++
			ratios = append(ratios, took[0].Seconds()/took[1].Seconds()) // with/without rate
		}
		slices.Sort(ratios)
		med := ratios[len(ratios)/2]
		b.ReportMetric(med, "with/without")
		b.Logf("median with/without ratio %.3f over %d interleaved rounds of %d mints (min %.3f, max %.3f)",
			med, len(ratios), perRound, ratios[0], ratios[len(ratios)-1])
	})
}

// mintRound mints n JWT-SVIDs with new audiences and returns how long it
// took.
func mintRound(b *testing.B, agent *spiretest.Agent, n int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	for i := range n {
		if _, err := agent.FetchJWTSVID(ctx, fmt.Sprintf("aud-r-%d-%d", time.Now().UnixNano(), i)); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

func mkTaskDir(b *testing.B, srv *spiretest.Server) string {
	dir := filepath.Join(srv.Root, "tasks")
	if err := os.Mkdir(dir, 0o750); err != nil {
		b.Fatal(err)
	}
	return dir
}

func mint(b *testing.B, agent *spiretest.Agent) {
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		if _, err := agent.FetchJWTSVID(ctx, fmt.Sprintf("aud-%d-%d", time.Now().UnixNano(), i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
}

type jwtSVID = jwtsvid.SVID
