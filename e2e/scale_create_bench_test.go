package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkRegistrarCreateScale measures the registrar's task creation as
// live tasks grow, on a real SPIRE server: it fills SPIRE with root tasks
// in the layout the registrar writes (registrar.RenderEntry, through
// BatchCreateEntry, 100 per call, all of one agent, model, prompt, scope
// and principal, as one fleet's are) and, at each size of
// AGENTID_SCALE_SIZES (default 1000,10000), creates 200 more with
// Registrar.Create, one at a time: tasks/s, p50/p99 latency, and the rate
// at the largest size over the rate at the smallest.
// AGENTID_SCALE_DATASTORE=postgres runs it on PostgreSQL, and
// AGENTID_SCALE_EVENTS=1 with SPIRE's events_based_cache. Run it once:
//
//	go test -run '^$' -bench BenchmarkRegistrarCreateScale -benchtime 1x -timeout 60m ./e2e/
func BenchmarkRegistrarCreateScale(b *testing.B) {
	sizes := scaleSizes(b)
	for b.Loop() {
		opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: os.Getenv("AGENTID_SCALE_EVENTS") == "1"}
		if os.Getenv("AGENTID_SCALE_DATASTORE") == "postgres" {
			opts.DataStore = startPostgres(b, "spire").SPIREDataStore()
		}
		srv := spiretest.StartServer(b, opts)
		conn := srv.Dial(b)
		pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
		if err != nil {
			b.Fatal(err)
		}
		r := registrar.New(conn, srv.TrustDomain, pol)
		client := entryv1.NewEntryClient(conn)
		ctx := context.Background()
		node := spiffeid.RequireFromString("spiffe://example.org/agent/node-1")
		deadline := time.Unix(time.Now().Add(3*time.Hour).Unix(), 0).UTC()
		live := 0
		var rates []float64
		for _, size := range sizes {
			if live < size {
				fillTasks(ctx, b, r, client, node, deadline, live, size, scaleClaims)
				live = size
			}
			const probe = 200
			var took []time.Duration
			start := time.Now()
			for k := range probe {
				t0 := time.Now()
				_, err := r.Create(ctx, registrar.Request{Agent: "planner", Task: fmt.Sprintf("C-%d-%d", size, k),
					Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"},
					Principal: "spiffe://example.org/user/alice", TTL: time.Hour, ParentID: node.String()})
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
			}
			rate := probe / time.Since(start).Seconds()
			live += probe
			rates = append(rates, rate)
			b.ReportMetric(rate, fmt.Sprintf("tasks/s@%d", size))
			b.Logf("registrar create at %d live tasks: %.1f tasks/s, p50 %v, p99 %v; load %s", size, rate, pct(took, 50), pct(took, 99), loadAvg())
		}
		if len(rates) > 1 {
			b.ReportMetric(rates[len(rates)-1]/rates[0], fmt.Sprintf("rate@%d/rate@%d", sizes[len(sizes)-1], sizes[0]))
			b.Logf("rate at %d / rate at %d = %.2f", sizes[len(sizes)-1], sizes[0], rates[len(rates)-1]/rates[0])
		}
	}
}
