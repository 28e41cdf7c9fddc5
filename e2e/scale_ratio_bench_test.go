package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkRegistrarCreateRatio is BenchmarkRegistrarCreateScale made
// robust to a shared, noisy machine: one SPIRE server per size of
// AGENTID_SCALE_SIZES (default 1000,10000), all filled first (the
// registrar's own layout through BatchCreateEntry) and running side by
// side; then rounds of 50 Registrar.Create on each server in turn (the
// order rotated every round), so that load from other processes hits a
// round, not one size. It reports the median over rounds of the rate at
// the largest size over the rate at the smallest, and each size's median
// rate. AGENTID_SCALE_EVENTS=1 runs SPIRE with events_based_cache,
// AGENTID_SCALE_ROUNDS the rounds (default 9), and AGENTID_SCALE_ANALYZE=1
// runs SQLite's ANALYZE on each filled datastore (sqlite3 CLI; during the
// fill too, every 10,000 tasks);
// AGENTID_SCALE_DATASTORE=postgres gives each server a PostgreSQL datastore
// (whose autovacuum keeps planner statistics by itself). Run it once:
//
//	AGENTID_SCALE_EVENTS=1 go test -run '^$' -bench BenchmarkRegistrarCreateRatio -benchtime 1x -timeout 90m ./e2e/
func BenchmarkRegistrarCreateRatio(b *testing.B) {
	sizes := scaleSizes(b)
	rounds := 9
	if s := os.Getenv("AGENTID_SCALE_ROUNDS"); s != "" {
		fmt.Sscan(s, &rounds)
	}
	for b.Loop() {
		pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		node := spiffeid.RequireFromString("spiffe://example.org/agent/node-1")
		deadline := time.Unix(time.Now().Add(3*time.Hour).Unix(), 0).UTC()
		regs := make([]*registrar.Registrar, len(sizes))
		for k, size := range sizes {
			opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: os.Getenv("AGENTID_SCALE_EVENTS") == "1"}
			var pg *postgres
			if os.Getenv("AGENTID_SCALE_DATASTORE") == "postgres" {
				pg = startPostgres(b, "spire")
				opts.DataStore = pg.SPIREDataStore()
			}
			srv := spiretest.StartServer(b, opts)
			conn := srv.Dial(b)
			regs[k] = registrar.New(conn, srv.TrustDomain, pol)
			client := entryv1.NewEntryClient(conn)
			start := time.Now()
			fillStats(ctx, b, regs[k], client, node, deadline, 0, size, srv, pg)
			b.Logf("filled %d tasks in %v (%.0f/s); load %s", size, time.Since(start).Round(time.Second), float64(size)/time.Since(start).Seconds(), loadAvg())
			if pg != nil {
				// PostgreSQL's autovacuum analyzes the filled table by
				// itself (within autovacuum_naptime, 1 min): wait for it
				// rather than run ANALYZE.
				waitAutoAnalyze(b, pg)
			}
		}
		const perRound = 50
		rates := make([][]float64, len(sizes))
		lat := make([][]time.Duration, len(sizes)) // each create's latency
		var ratios []float64
		n := 0
		for round := range rounds {
			took := make([]time.Duration, len(sizes))
			for j := range sizes {
				k := (j + round) % len(sizes)
				start := time.Now()
				for range perRound {
					n++
					t0 := time.Now()
					if _, err := regs[k].Create(ctx, registrar.Request{Agent: "planner", Task: fmt.Sprintf("C-%d", n),
						Model: "openai/gpt-4o", Prompt: digest, Scope: []string{"kb:read"},
						Principal: "spiffe://example.org/user/alice", TTL: time.Hour, ParentID: node.String()}); err != nil {
						b.Fatal(err)
					}
					lat[k] = append(lat[k], time.Since(t0))
				}
				took[k] = time.Since(start)
				rates[k] = append(rates[k], perRound/took[k].Seconds())
			}
			ratios = append(ratios, took[0].Seconds()/took[len(sizes)-1].Seconds())
		}
		med := func(xs []float64) float64 { xs = slices.Clone(xs); slices.Sort(xs); return xs[len(xs)/2] }
		for k, size := range sizes {
			b.ReportMetric(med(rates[k]), fmt.Sprintf("tasks/s@%d", size))
		}
		for k, size := range sizes {
			l := slices.Sorted(slices.Values(lat[k]))
			b.ReportMetric(float64(l[len(l)*99/100].Milliseconds()), fmt.Sprintf("p99-ms@%d", size))
			b.Logf("create latency at %d live tasks: p50 %v, p99 %v (%d creates)", size, l[len(l)/2].Round(time.Millisecond), l[len(l)*99/100].Round(time.Millisecond), len(l))
		}
		r := med(ratios)
		b.ReportMetric(r, fmt.Sprintf("rate@%d/rate@%d", sizes[len(sizes)-1], sizes[0]))
		slices.Sort(ratios)
		b.Logf("median over %d rounds of %d creates: rate at %d / rate at %d = %.2f (min %.2f, max %.2f); median rates %.1f and %.1f tasks/s; load %s",
			rounds, perRound, sizes[len(sizes)-1], sizes[0], r, ratios[0], ratios[len(ratios)-1], med(rates[0]), med(rates[len(sizes)-1]), loadAvg())
	}
}

// waitAutoAnalyze waits until PostgreSQL's autovacuum has analyzed SPIRE's
// registered_entries table (at most 3 minutes).
func waitAutoAnalyze(b *testing.B, pg *postgres) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := pg.cmd(30*time.Second, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-d", pg.Database, "-tAc",
			"SELECT last_autoanalyze IS NOT NULL AND n_mod_since_analyze < 100 FROM pg_stat_user_tables WHERE relname = 'registered_entries'")
		if err == nil && strings.TrimSpace(out) == "t" {
			return
		}
		if time.Now().After(deadline) {
			b.Logf("no autoanalyze of registered_entries after 3 minutes (%v %s); measuring anyway", err, out)
			return
		}
		time.Sleep(5 * time.Second)
	}
}
