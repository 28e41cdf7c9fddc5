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
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
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
// "composer" with it, for the same task identity on both (same entry, same
// attestation through the agentid attestor), so the difference is the
// composer's cost. "passthrough" mints a non-task identity on the
// composer's SPIRE: the plugin is called and leaves it alone, which
// separates the plugin round trip from the composer's own work. "ratio"
// reports the median ratios of interleaved rounds.
func BenchmarkJWTMint(b *testing.B) {
	composer := spiretest.BuildCmd(b, "./cmd/agentid-composer")
	att := spiretest.BuildCmd(b, "./cmd/agentid-attestor")
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)

	plainSrv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN"})
	plainDir := mkTaskDir(b, plainSrv)
	plain := plainSrv.StartAgent(b, spiretest.AgentOptions{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "WorkloadAttestor", "agentid", att, `manifest_dir = "`+plainDir+`"`+sameUser)})

	srv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "CredentialComposer", "agentid", composer, `server_api_socket = "`+spiretest.SocketPlaceholder+`"`)})
	dir := mkTaskDir(b, srv)
	agent := srv.StartAgent(b, spiretest.AgentOptions{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "WorkloadAttestor", "agentid", att, `manifest_dir = "`+dir+`"`+sameUser)})

	// The same task on both: created through the registrar, and this
	// benchmark process launched as it (as `agentid run` would) in both
	// manifest directories, so that attestation, entry and selectors are
	// the same and only the composer differs.
	pol, _ := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	for _, side := range []struct {
		srv   *spiretest.Server
		agent *spiretest.Agent
		dir   string
	}{{plainSrv, plain, plainDir}, {srv, agent, dir}} {
		task, err := registrar.New(side.srv.Dial(b), side.srv.TrustDomain, pol).Create(context.Background(), registrar.Request{
			Agent: "planner", Task: "bench", Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"},
			Principal: "spiffe://example.org/user/alice", TTL: time.Hour, ParentID: side.agent.NodeID.String(),
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := (&attestor.Launch{Dir: side.dir, Claims: task.Claims, Incarnation: task.Incarnation, Path: self}).Prepare(); err != nil {
			b.Fatal(err)
		}
	}
	// A second identity of this process on the composer's SPIRE, not a
	// task: the composer is called for it and passes it through, so its
	// mints pay the plugin round trip but none of the composer's work.
	const other = "spiffe://example.org/bench-not-a-task"
	srv.CreateEntry(b, other, agent.NodeID.String(), "unix:path:"+self)

	const taskID = "spiffe://example.org/agent/planner/task/bench"
	sides := []struct {
		name    string
		agent   *spiretest.Agent
		subject string
		claims  bool
	}{
		{"plain", plain, taskID, false},
		{"passthrough", agent, other, false},
		{"composer", agent, taskID, true},
	}
	for _, side := range sides {
		s := waitJWT(b, side.agent, side.subject)
		if _, found, err := svid.FromJWTSVID(s); found != side.claims || err != nil {
			b.Fatalf("%s: JWT-SVID %s carries task claims: %v (want %v), %v", side.name, s.ID, found, side.claims, err)
		}
	}
	for _, side := range sides {
		b.Run(side.name, func(b *testing.B) {
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				if _, err := fetchJWT(ctx, side.agent, side.subject, fmt.Sprintf("aud-%d-%d", time.Now().UnixNano(), i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "svids/s")
		})
	}
	// The ratios: the three take turns in rounds of the same number of
	// mints (the order rotated every round) and the median of the
	// per-round ratios is reported, so that load from other processes on
	// a shared machine hits a round, not one side.
	b.Run("ratio", func(b *testing.B) {
		const perRound = 30
		var withWithout, rpc, own []float64
		round := 0
		for b.Loop() {
			var took [3]time.Duration
			for k := range 3 {
				i := (k + round) % 3
				took[i] = mintRound(b, sides[i].agent, sides[i].subject, perRound)
			}
			round++
			// rate ratios: the time of the side without over the side with
			withWithout = append(withWithout, took[0].Seconds()/took[2].Seconds())
			rpc = append(rpc, took[0].Seconds()/took[1].Seconds())
			own = append(own, took[1].Seconds()/took[2].Seconds())
		}
		med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
		b.ReportMetric(med(withWithout), "with/without")
		b.ReportMetric(med(rpc), "passthrough/without")
		b.ReportMetric(med(own), "with/passthrough")
		b.Logf("medians over %d rounds of %d mints each: composer/plain %.3f (min %.3f, max %.3f); passthrough/plain %.3f (the plugin round trip); composer/passthrough %.3f (the composer's own work)",
			len(withWithout), perRound, med(withWithout), withWithout[0], withWithout[len(withWithout)-1], med(rpc), med(own))
	})
}

// fetchJWT mints a JWT-SVID for subject through agent's Workload API.
func fetchJWT(ctx context.Context, agent *spiretest.Agent, subject, audience string) (*jwtsvid.SVID, error) {
	return workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience, Subject: spiffeid.RequireFromString(subject)}, workloadapi.WithAddr(agent.Addr()))
}

// waitJWT polls until agent mints a JWT-SVID for subject.
func waitJWT(b *testing.B, agent *spiretest.Agent, subject string) *jwtsvid.SVID {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := fetchJWT(ctx, agent, subject, "warmup")
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			b.Fatalf("no JWT-SVID for %s: %v", subject, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mintRound mints n JWT-SVIDs for subject with new audiences and returns
// how long it took.
func mintRound(b *testing.B, agent *spiretest.Agent, subject string, n int) time.Duration {
	ctx := context.Background()
	start := time.Now()
	for i := range n {
		if _, err := fetchJWT(ctx, agent, subject, fmt.Sprintf("aud-r-%d-%d", time.Now().UnixNano(), i)); err != nil {
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
