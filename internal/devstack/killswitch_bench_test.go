package devstack_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/registrar"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// liveFiller is how many live tasks the benchmark's SPIRE holds besides
// the one being revoked.
const liveFiller = 10_000

// BenchmarkRevocationToDeny: on the real SPIRE (`agentid dev` intervals:
// feed 500 ms, SPIRE 1 s) holding 10,000 live task entries, two registrars
// and three verifiers. Each round creates a task, fetches its JWT-SVID as
// the task, waits until all three verifiers allow it and have listed it,
// revokes it through one registrar (the two in turn) and measures, per
// verifier, the time until the check API answers "revoked". It reports
// the p50 and p99 over rounds × verifiers, and what one listing of the
// live tasks (the feed's per-interval work, per registrar) takes at this
// size.
//
//	go test -run '^$' -bench RevocationToDeny -benchtime 20x ./internal/devstack/
func BenchmarkRevocationToDeny(b *testing.B) {
	spireBin := spiretest.Bin(b)
	binDir := buildBinaries(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Stop() })
	conn, err := grpc.NewClient("unix://"+st.ServerSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	fill(ctx, b, entryv1.NewEntryClient(conn), liveFiller)

	r2, err := st.StartRegistrar(ctx, "reg2")
	if err != nil {
		b.Fatal(err)
	}
	verifiers := []*devstack.Verifier{st.Verifier}
	for name, feeds := range map[string][]string{"v2": {r2.Addr}, "v3": {r2.Addr, st.RegistrarAddr}} {
		v, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: name, PolicyDir: st.Verifier.PolicyDir, Registrars: feeds})
		if err != nil {
			b.Fatal(err)
		}
		verifiers = append(verifiers, v)
	}

	// The feed's per-interval work at this size: one listing.
	reg := registrar.New(conn, spiffeid.RequireTrustDomainFromString(st.TrustDomain), nil)
	var lists []time.Duration
	for range 5 {
		start := time.Now()
		ids, err := reg.LiveTasks(ctx)
		if err != nil {
			b.Fatal(err)
		}
		lists = append(lists, time.Since(start))
		if len(ids) < liveFiller {
			b.Fatalf("listed %d live tasks, want at least %d", len(ids), liveFiller)
		}
	}
	slices.Sort(lists)

	operators := []registrarv1.RegistrarClient{}
	for _, sock := range []string{st.RegistrarOperatorSocket, r2.OperatorSocket} {
		c, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		operators = append(operators, registrarv1.NewRegistrarClient(c))
	}
	work := b.TempDir()
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		task := fmt.Sprintf("RV-%d", i)
		file := filepath.Join(work, task+".json")
		if _, err := agentid(b, st, work, "task", "create", "--server-socket", st.ServerSocket, "--policy", st.IssuancePolicy,
			"--parent-id", st.NodeID, "--agent", "planner", "--task", task, "--model", "openai/gpt-4o",
			"--prompt-file", st.SamplePrompt, "--principal", "spiffe://example.org/user/alice", "--scope", "kb:read", "--ttl", "1h", "--output", file); err != nil {
			b.Fatal(err)
		}
		jwt := fetchCredentials(b, st, work, file)[0]
		for _, v := range verifiers {
			if got, err := decide(httpClient, v, jwt); err != nil || got != "allow" {
				b.Fatalf("%s at %s: %q %v", task, v.Name, got, err)
			}
		}
		time.Sleep(time.Second) // two feed intervals: every view has listed the task
		b.StartTimer()
		killed := time.Now()
		if _, err := operators[i%2].RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: "spiffe://example.org/agent/planner/task/" + task}); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, v := range verifiers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(killed) < 30*time.Second {
					if got, err := decide(httpClient, v, jwt); err == nil && got == "revoked" {
						mu.Lock()
						lat = append(lat, time.Since(killed))
						mu.Unlock()
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				b.Errorf("%s still not revoked at %s after 30 s", task, v.Name)
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
		b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
		b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	}
	b.ReportMetric(ms(lists[len(lists)/2]), "list-ms")
}

var httpClient = newHTTPClient()

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fill creates n live task entries under a node no agent runs on (so that
// no agent signs SVIDs for them), in batches.
func fill(ctx context.Context, b *testing.B, c entryv1.EntryClient, n int) {
	b.Helper()
	start := time.Now()
	const batch = 500
	for lo := 0; lo < n; lo += batch {
		var entries []*types.Entry
		for i := lo; i < min(n, lo+batch); i++ {
			task := fmt.Sprintf("F-%06d", i)
			entries = append(entries, &types.Entry{
				SpiffeId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/agent/filler/task/" + task},
				ParentId:  &types.SPIFFEID{TrustDomain: "example.org", Path: "/agentid/no-such-node"},
				Selectors: []*types.Selector{{Type: "agentid", Value: "task:" + task}, {Type: "agentid", Value: "agent:filler"}},
				ExpiresAt: time.Now().Add(2 * time.Hour).Unix(),
			})
		}
		resp, err := c.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if codes.Code(r.GetStatus().GetCode()) != codes.OK {
				b.Fatalf("create filler entry: %v", r.GetStatus())
			}
		}
	}
	b.Logf("%d filler task entries created in %v", n, time.Since(start).Round(time.Millisecond))
}
