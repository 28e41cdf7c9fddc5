package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkTaskList is what `agentid task list` (Registrar.List: every
// page of SPIRE's entries, decoded) takes with 10,000 live tasks on a real
// SPIRE server (sqlite), unfiltered and filtered by agent (in the
// task-scoped layout filters are tested on decoded tasks, so both read
// every entry). SPIRE is filled in the registrar's own layout
// (registrar.RenderEntry, through BatchCreateEntry) before the timer.
// AGENTID_SCALE_DATASTORE=postgres runs the server on PostgreSQL; with
// AGENTID_SCALE_SIZES set, the largest size is the number of live tasks
// (default 10,000), AGENTID_SCALE_EVENTS=1 turns SPIRE's events-based
// entry cache on, and AGENTID_SCALE_ANALYZE=1 refreshes sqlite's
// statistics during the fill (fillStats). After the lists, the server's
// idle CPU over 20 s without a call is reported too (idle-cores).
//
//	go test -run '^$' -bench TaskList -benchtime 5x ./e2e/
//	AGENTID_SCALE_SIZES=100000 AGENTID_SCALE_EVENTS=1 AGENTID_SCALE_ANALYZE=1 go test -run '^$' -bench TaskList -benchtime 2x -timeout 90m ./e2e/
func BenchmarkTaskList(b *testing.B) {
	live := 10_000
	if os.Getenv("AGENTID_SCALE_SIZES") != "" {
		sizes := scaleSizes(b)
		live = sizes[len(sizes)-1]
	}
	opts := spiretest.Options{LogLevel: "WARN", EventsBasedCache: os.Getenv("AGENTID_SCALE_EVENTS") == "1"}
	pg := scalePostgres(b, &opts)
	srv := spiretest.StartServer(b, opts)
	conn := srv.Dial(b)
	r := registrar.New(conn, srv.TrustDomain, nil)
	client := entryv1.NewEntryClient(conn)
	ctx := context.Background()
	node := spiffeid.RequireFromString("spiffe://example.org/agent/node-1")
	deadline := time.Unix(time.Now().Add(2*time.Hour).Unix(), 0).UTC()
	fillStats(ctx, b, r, client, node, deadline, 0, live, srv, pg)
	b.Logf("%s, %d live tasks filled; load %s", datastoreName(), live, loadAvg())
	for _, f := range []struct {
		name   string
		filter registrar.Filter
		want   int
	}{{"all", registrar.Filter{}, live}, {"agent", registrar.Filter{Agent: "planner"}, live}} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				got, err := r.List(ctx, f.filter)
				if err != nil {
					b.Fatal(err)
				}
				if len(got.Tasks) != f.want {
					b.Fatalf("listed %d tasks, want %d", len(got.Tasks), f.want)
				}
			}
		})
	}
	const window = 20 * time.Second
	t0 := cpuTicks(b, srv.Pid())
	time.Sleep(window)
	idle := float64(cpuTicks(b, srv.Pid())-t0) / 100 / window.Seconds() // USER_HZ = 100
	b.ReportMetric(idle, "idle-cores")
	b.Logf("%s, events_based_cache=%v, %d live tasks: idle CPU %.3f of a core, RSS %.0f MiB; load %s",
		datastoreName(), opts.EventsBasedCache, live, idle, float64(rssKiB(b, srv.Pid()))/1024, loadAvg())
}
