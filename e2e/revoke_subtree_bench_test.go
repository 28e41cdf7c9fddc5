package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
)

// BenchmarkRevokeSubtree is the time Registrar.Revoke takes to remove a
// root task and its 1,000 delegated children on a real SPIRE server
// (sqlite), next to 1,000 unrelated live tasks: the children are found by
// the entry hint (the chain's root), listed and deleted until none is
// left. Each round fills SPIRE again (children in the registrar's own
// layout, registrar.RenderEntry, through BatchCreateEntry) outside the
// timer. AGENTID_SCALE_DATASTORE=postgres runs the server on PostgreSQL.
//
//	go test -run '^$' -bench RevokeSubtree -benchtime 3x ./e2e/
func BenchmarkRevokeSubtree(b *testing.B) {
	const children, others = 1000, 1000
	opts := spiretest.Options{LogLevel: "WARN"}
	scalePostgres(b, &opts)
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
	deadline := time.Unix(time.Now().Add(2*time.Hour).Unix(), 0).UTC()
	fill := func(render func(i int) svid.Claims, n int) {
		fillTasks(ctx, b, r, client, node, deadline, 0, n, render)
	}
	fill(scaleClaims, others)
	b.ResetTimer()
	var total time.Duration
	for round := range b.N {
		b.StopTimer()
		root, err := r.Create(ctx, registrar.Request{Agent: "planner", Task: fmt.Sprintf("R-%d", round), Model: "openai/gpt-4o",
			Prompt: digest, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", Deadline: deadline.Add(time.Hour),
			ParentID: node.String()})
		if err != nil {
			b.Fatal(err)
		}
		fill(func(i int) svid.Claims {
			return svid.Claims{V: svid.Version, Agent: "researcher", Task: fmt.Sprintf("D-%d-%d", round, i), Model: "openai/gpt-4o",
				Prompt: digest, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{root.ID.String()}}
		}, children)
		b.StartTimer()
		start := time.Now()
		removed, err := r.Revoke(ctx, root.ID)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if len(removed) != children+1 {
			b.Fatalf("revoke removed %d entries, want the root and its %d children", len(removed), children)
		}
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/revoke")
}
