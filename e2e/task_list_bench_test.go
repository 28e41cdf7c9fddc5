package e2e

import (
	"context"
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
// AGENTID_SCALE_DATASTORE=postgres runs the server on PostgreSQL.
//
//	go test -run '^$' -bench TaskList -benchtime 5x ./e2e/
func BenchmarkTaskList(b *testing.B) {
	const live = 10_000
	opts := spiretest.Options{LogLevel: "WARN"}
	scalePostgres(b, &opts)
	srv := spiretest.StartServer(b, opts)
	conn := srv.Dial(b)
	r := registrar.New(conn, srv.TrustDomain, nil)
	client := entryv1.NewEntryClient(conn)
	ctx := context.Background()
	node := spiffeid.RequireFromString("spiffe://example.org/agent/node-1")
	deadline := time.Unix(time.Now().Add(2*time.Hour).Unix(), 0).UTC()
	fillTasks(ctx, b, r, client, node, deadline, 0, live, scaleClaims)
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
}
