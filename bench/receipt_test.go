package bench

// Issue 13: what does a receipt cost a decision? BenchmarkReceipts runs,
// in one process and one run, with the default durability (fsync per
// batch) and concurrent callers:
//
//   - append/v1-hashchain: the hash-chain writer before issue 13
//     (internal/auditv1, a frozen copy), Append returning once queued —
//     the "382k appends/s" of the README;
//   - append/v2: today's tlog v2 writer, queued; append/v2-wait:
//     AppendWait, returning once the record is synced (one fsync per batch
//     shared by the waiting callers);
//   - decide/*: Verifier.Decide, the whole pipeline (cached X.509 peer, the
//     generated 1,000-rule policy, the audit record) with receipts off
//     (queued record) and on (the allowed decision waits for its record
//     to be durable and carries its reference), with each decision's
//     latency (p50/p99);
//
// each from 64 and 256 concurrent callers (GOMAXPROCS=2 × 32 / × 128).
//
//	cd bench && go test -run '^$' -bench Receipts -benchtime 2s
import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/bench/internal/auditv1"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func receiptRecord() audit.Record {
	return audit.Record{Type: audit.TypeDecision, Peer: "spiffe://example.org/agent/researcher/task/T-42", Serial: "2a",
		Claims: []byte(`{"v":1,"agent":"researcher"}`), Action: &audit.Action{Kind: "http", Method: "GET", Path: "/kb/1"},
		Decision: "allow", Rules: []string{"read-kb (kb.hcl:3)"}, PolicyDigest: "sha256:00"}
}

func receiptVerifier(b *testing.B, receipts bool) (*verifier.Verifier, *verifier.Query) {
	td := spiffeid.RequireTrustDomainFromString(policygen.TrustDomain)
	ca := testca.New(b, td, time.Now())
	r := policygen.Request{Agent: "agent-7", Task: "T-7"}
	c := svid.Claims{V: svid.Version, Agent: r.Agent, Task: r.Task, Model: "openai/gpt-4o", Prompt: svid.PromptDigest([]byte("p")),
		Scope: []string{"svc7:read", "kb:read"}, Principal: "spiffe://" + policygen.TrustDomain + "/user/alice",
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	ext, err := c.Extension(nil)
	if err != nil {
		b.Fatal(err)
	}
	s := ca.CreateX509SVID(spiffeid.RequireFromString(r.ID()), testca.WithExtensions(ext))
	set, diags := policies.LoadFiles([]policies.File{{Name: "gen.hcl", Src: []byte(policygen.HCL(policygen.Rules(1000)))}})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	w, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{Signer: ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://" + policygen.TrustDomain + "/verifier"))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}), Policy: set, Audit: w, Receipts: receipts}
	q := &verifier.Query{Frontend: verifier.FrontendHTTP, Credential: verifier.Credential{Kind: verifier.CredentialX509, Chain: s.Certificates},
		Action: verifier.Action{Kind: policies.KindHTTP, Method: "GET", Path: "/svc7/docs/1"}}
	if res := v.Decide(context.Background(), q); !res.Allowed() || res.Decision.Receipt.IsZero() != !receipts {
		b.Fatalf("decision %+v", res)
	}
	return v, q
}

func BenchmarkReceipts(b *testing.B) {
	for _, par := range []int{32, 128, 512} {
		callers := fmt.Sprintf("callers=%d", 2*par)
		b.Run("append/v1-hashchain/"+callers, func(b *testing.B) {
			w, err := auditv1.Open(filepath.Join(b.TempDir(), "audit.log"), auditv1.Options{})
			if err != nil {
				b.Fatal(err)
			}
			rec := auditv1.Record{Type: auditv1.TypeDecision, Peer: "spiffe://example.org/agent/researcher/task/T-42", Serial: "2a",
				Claims: []byte(`{"v":1,"agent":"researcher"}`), Action: &auditv1.Action{Kind: "http", Method: "GET", Path: "/kb/1"},
				Decision: "allow", Rules: []string{"read-kb (kb.hcl:3)"}, PolicyDigest: "sha256:00"}
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w.Append(rec)
				}
			})
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			w.Close()
		})
		for _, wait := range []bool{false, true} {
			name := "append/v2/"
			if wait {
				name = "append/v2-wait/"
			}
			b.Run(name+callers, func(b *testing.B) {
				w, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rec := receiptRecord()
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if wait {
							w.AppendWait(rec)
						} else {
							w.Append(rec)
						}
					}
				})
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(b.N)/float64(w.Syncs()), "records/sync")
				w.Close()
			})
		}
		for _, receipts := range []bool{false, true} {
			name := "decide/receipts-off/"
			if receipts {
				name = "decide/receipts-on/"
			}
			b.Run(name+callers, func(b *testing.B) {
				v, q := receiptVerifier(b, receipts)
				var mu sync.Mutex
				var all []time.Duration
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					lat := make([]time.Duration, 0, 1024)
					ctx := context.Background()
					for pb.Next() {
						qq := *q
						t0 := time.Now()
						res := v.Decide(ctx, &qq)
						lat = append(lat, time.Since(t0))
						if !res.Allowed() {
							b.Errorf("%+v", res)
							return
						}
					}
					mu.Lock()
					all = append(all, lat...)
					mu.Unlock()
				})
				if err := v.Audit.Flush(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				slices.Sort(all)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
