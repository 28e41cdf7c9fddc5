package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// scaleSizes are the live-entry counts BenchmarkEntryLayout measures at:
// AGENTID_SCALE_SIZES (comma-separated), default 1000,10000.
func scaleSizes(b *testing.B) []int {
	s := os.Getenv("AGENTID_SCALE_SIZES")
	if s == "" {
		s = "1000,10000"
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("AGENTID_SCALE_SIZES: %q is not a positive count", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// layout renders the agentid selector values of root task i.
type layout struct {
	name string
	sels func(i int) []string
}

// scaleClaims is the record every filler task shares but its task ID: one
// agent, model, prompt, scope and principal, as a fleet running one kind of
// agent has.
func scaleClaims(i int) svid.Claims {
	return svid.Claims{V: svid.Version, Agent: "planner", Task: fmt.Sprintf("S-%d", i), Model: "openai/gpt-4o",
		Prompt: digest, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice"}
}

var layouts = []layout{
	// v1: the contract's selectors (svid.Claims.Selectors): 6 of 7 are
	// the same for every task.
	{"v1-shared", func(i int) []string { return scaleClaims(i).Selectors() }},
	// task-scoped: the same record, every value prefixed by the task
	// selector, so that no selector is shared by two tasks.
	{"task-scoped", func(i int) []string {
		c := scaleClaims(i)
		out := []string{"task:" + c.Task}
		for _, v := range c.Selectors() {
			if !strings.HasPrefix(v, "task:") {
				out = append(out, "task:"+c.Task+":"+v)
			}
		}
		return out
	}},
}

// BenchmarkEntryLayout measures, on a real SPIRE server, what the
// selector layout of task entries costs as the number of live entries
// grows: for each layout a fresh server is filled with entries of that
// layout (BatchCreateEntry, 100 per call), and at each size of
// AGENTID_SCALE_SIZES (default 1000,10000) 200 more entries are created one
// per call, as the registrar creates a task; the rate, the p50/p99
// latencies of one create and of a ListEntries by SPIFFE ID (the
// registrar's duplicate check) are reported, and the rate at the largest
// size over the rate at the smallest. AGENTID_SCALE_DATASTORE=postgres
// runs it on a PostgreSQL datastore, AGENTID_SCALE_EVENTS=1 with SPIRE's
// events_based_cache. Run it once:
//
//	go test -run '^$' -bench BenchmarkEntryLayout -benchtime 1x -timeout 60m ./e2e/
func BenchmarkEntryLayout(b *testing.B) {
	sizes := scaleSizes(b)
	for _, l := range layouts {
		b.Run(l.name, func(b *testing.B) {
			for b.Loop() {
				measureLayout(b, l, sizes)
			}
		})
	}
}

func measureLayout(b *testing.B, l layout, sizes []int) {
	opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: os.Getenv("AGENTID_SCALE_EVENTS") == "1"}
	if os.Getenv("AGENTID_SCALE_DATASTORE") == "postgres" {
		opts.DataStore = startPostgres(b, "spire").SPIREDataStore()
	}
	srv := spiretest.StartServer(b, opts)
	client := entryv1.NewEntryClient(srv.Dial(b))
	ctx := context.Background()
	node := &types.SPIFFEID{TrustDomain: srv.TrustDomain.Name(), Path: "/agent/node-1"}
	expires := time.Now().Add(3 * time.Hour).Unix()
	mk := func(i int) *types.Entry {
		sels := make([]*types.Selector, 0, 8)
		for _, v := range l.sels(i) {
			sels = append(sels, &types.Selector{Type: svid.DefaultSelectorType, Value: v})
		}
		return &types.Entry{SpiffeId: &types.SPIFFEID{TrustDomain: srv.TrustDomain.Name(), Path: fmt.Sprintf("/agent/planner/task/S-%d", i)},
			ParentId: node, Selectors: sels, ExpiresAt: expires, X509SvidTtl: 300, JwtSvidTtl: 300}
	}
	create := func(entries []*types.Entry) {
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if codes.Code(r.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("create: %v", r.GetStatus())
			}
		}
	}
	const probe = 200
	next := 0
	var rates []float64
	for _, size := range sizes {
		fillStart := time.Now()
		filled := next
		for next < size {
			n := min(100, size-next)
			batch := make([]*types.Entry, n)
			for k := range batch {
				batch[k] = mk(next + k)
			}
			create(batch)
			next += n
		}
		fill := time.Since(fillStart)
		// the probes: one create per call, then one lookup by SPIFFE ID
		var took, looks []time.Duration
		start := time.Now()
		for k := range probe {
			t0 := time.Now()
			create([]*types.Entry{mk(next + k)})
			took = append(took, time.Since(t0))
		}
		elapsed := time.Since(start)
		for k := range probe {
			t0 := time.Now()
			resp, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 2,
				Filter: &entryv1.ListEntriesRequest_Filter{BySpiffeId: mk(next + k).SpiffeId}})
			if err != nil || len(resp.GetEntries()) != 1 {
				b.Fatalf("lookup: %v, %d entries", err, len(resp.GetEntries()))
			}
			looks = append(looks, time.Since(t0))
		}
		next += probe
		rate := probe / elapsed.Seconds()
		rates = append(rates, rate)
		b.ReportMetric(rate, fmt.Sprintf("creates/s@%d", size))
		b.Logf("%s at %d live entries: %.1f creates/s (p50 %v, p99 %v); ListEntries by SPIFFE ID p50 %v p99 %v; filled %d in %v (%.0f/s); load %s",
			l.name, size, rate, pct(took, 50), pct(took, 99), pct(looks, 50), pct(looks, 99),
			size-filled, fill.Round(time.Millisecond), float64(size-filled)/fill.Seconds(), loadAvg())
	}
	if len(rates) > 1 {
		ratio := rates[len(rates)-1] / rates[0]
		b.ReportMetric(ratio, fmt.Sprintf("rate@%d/rate@%d", sizes[len(sizes)-1], sizes[0]))
		b.Logf("%s: rate at %d / rate at %d = %.2f", l.name, sizes[len(sizes)-1], sizes[0], ratio)
	}
}

// pct returns the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	i := min(len(ds)-1, (len(ds)*p+99)/100-1)
	return ds[max(i, 0)].Round(10 * time.Microsecond)
}

// loadAvg is the 1, 5 and 15 minute load averages, "" where unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// fillTasks creates the tasks render(from) … render(to-1), with deadline,
// under node in the registrar's own layout (registrar.RenderEntry),
// straight through SPIRE's BatchCreateEntry, 100 per call.
func fillTasks(ctx context.Context, b testing.TB, r *registrar.Registrar, client entryv1.EntryClient, node spiffeid.ID,
	deadline time.Time, from, to int, render func(int) svid.Claims) {
	b.Helper()
	for lo := from; lo < to; lo += 100 {
		batch := make([]*types.Entry, 0, 100)
		for i := lo; i < min(to, lo+100); i++ {
			c := render(i)
			c.Deadline = deadline
			e, err := r.RenderEntry(c, node)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, e)
		}
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: batch})
		if err != nil {
			b.Fatal(err)
		}
		for _, res := range resp.GetResults() {
			if codes.Code(res.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("fill: %v", res.GetStatus())
			}
		}
	}
}

// scalePostgres gives opts a PostgreSQL datastore of its own (a fresh
// cluster) when AGENTID_SCALE_DATASTORE=postgres and returns the cluster;
// nil (opts untouched: sqlite) otherwise.
func scalePostgres(b testing.TB, opts *spiretest.Options) *postgres {
	b.Helper()
	if os.Getenv("AGENTID_SCALE_DATASTORE") != "postgres" {
		return nil
	}
	pg := startPostgres(b, "spire")
	opts.DataStore = pg.SPIREDataStore()
	return pg
}

// datastoreName is "postgres" or "sqlite", as scalePostgres decides.
func datastoreName() string {
	if os.Getenv("AGENTID_SCALE_DATASTORE") == "postgres" {
		return "postgres"
	}
	return "sqlite"
}

// datastoreBytes is the size of srv's datastore: the sqlite file, or the
// PostgreSQL database (pg_database_size) when pg is not nil.
func datastoreBytes(b testing.TB, srv *spiretest.Server, pg *postgres) int64 {
	b.Helper()
	if pg == nil {
		fi, err := os.Stat(filepath.Join(srv.Dir, "data", "datastore.sqlite3"))
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	out, err := pg.cmd(30*time.Second, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port), "-d", pg.Database, "-tAc",
		"SELECT pg_database_size(current_database())")
	if err != nil {
		b.Fatalf("psql: %v\n%s", err, out)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		b.Fatalf("pg_database_size: %q", out)
	}
	return n
}

// fillStats is fillTasks on srv with, when AGENTID_SCALE_ANALYZE=1 and the
// datastore is sqlite (pg nil), SQLite's statistics refreshed (ANALYZE)
// every 10,000 tasks and at the end: without them its planner answers
// SPIRE's duplicate check through the parent_id index, which every task of
// one node shares, and a fill of 100,000 on one node slows to a crawl.
func fillStats(ctx context.Context, b testing.TB, r *registrar.Registrar, client entryv1.EntryClient, node spiffeid.ID,
	deadline time.Time, from, to int, srv *spiretest.Server, pg *postgres) {
	b.Helper()
	analyzing := os.Getenv("AGENTID_SCALE_ANALYZE") == "1" && pg == nil
	for lo := from; lo < to; lo += 10_000 {
		fillTasks(ctx, b, r, client, node, deadline, lo, min(to, lo+10_000), scaleClaims)
		if analyzing {
			db := filepath.Join(srv.Dir, "data", "datastore.sqlite3")
			if out, err := exec.Command("sqlite3", db, "ANALYZE;").CombinedOutput(); err != nil {
				b.Fatalf("sqlite3 %s ANALYZE: %v: %s", db, err, out)
			}
		}
	}
}
