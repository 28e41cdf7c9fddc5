//go:build unix

package verifier_test

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"context"
	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BenchmarkExtAuthzAuditCost is what the audit record adds to a check in
// the closed loop of BenchmarkExtAuthzRatio (64 streams, one connection):
// the verifier without audit ("noaudit"), with the default audit log
// ("audit"), with 10 ms batches ("batch-10ms") and without fsyncs
// ("sync-none"), in interleaved rounds (the order rotated every round).
// It reports each server's median process CPU per check and its context
// switches per check (voluntary and involuntary, all threads), and the
// throughput of each relative to noaudit's in the same round.
func BenchmarkExtAuthzAuditCost(b *testing.B) {
	ca := testca.New(b, td, time.Now())
	v := benchVerifier(b, ca)
	noAudit := *v
	noAudit.Audit = nil
	open := func(name string, o audit.Options) *verifier.Verifier {
		w, err := audit.Open(filepath.Join(b.TempDir(), name), o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { w.Close() })
		c := *v
		c.Audit = w
		return &c
	}
	names := []string{"noaudit", "audit", "batch-10ms", "sync-none"}
	vs := []*verifier.Verifier{&noAudit, v, open("b10.log", audit.Options{BatchDelay: 10 * time.Millisecond}), open("none.log", audit.Options{Durability: audit.SyncNone})}
	reqs := make([]*authv3.CheckRequest, 8)
	for i := range reqs {
		certPEM, _ := testca.SVIDPEM(b, genSVID(b, ca, i, i, time.Now().Add(time.Hour)))
		reqs[i] = checkReq(url.PathEscape(string(certPEM)), "GET", fmt.Sprintf("/svc%d/docs/1", i), map[string]string{":authority": "kb", "user-agent": "bench"}, "")
	}
	clients := make([]authv3.AuthorizationClient, len(vs))
	for i, vv := range vs {
		conn, err := grpc.NewClient(serveExtAuthz(b, vv), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients[i] = authv3.NewAuthorizationClient(conn)
		if _, err := clients[i].Check(context.Background(), reqs[0]); err != nil {
			b.Fatal(err)
		}
	}
	const perRound = 20000
	ratios := make([][]float64, len(vs))
	cpu := make([][]float64, len(vs))
	csw := make([][]float64, len(vs))
	for i := 0; i < b.N || len(ratios[0]) < 9; i++ {
		rate := make([]float64, len(vs))
		for k := range vs {
			s := (k + i) % len(vs)
			if vs[s].Audit != nil {
				vs[s].Audit.Flush()
			}
			c0, x0 := processCPU(), switches()
			rate[s] = closedRound(b, clients[s], reqs, perRound)
			if vs[s].Audit != nil {
				vs[s].Audit.Flush() // its batch's work counts for its round
			}
			cpu[s] = append(cpu[s], float64(processCPU()-c0)/float64(time.Microsecond)/perRound)
			csw[s] = append(csw[s], float64(switches()-x0)/perRound)
		}
		for s := range vs {
			ratios[s] = append(ratios[s], rate[s]/rate[0])
		}
	}
	median := func(x []float64) float64 { return slices.Sorted(slices.Values(x))[len(x)/2] }
	for s := range vs {
		b.ReportMetric(median(cpu[s]), names[s]+"-cpu-µs/check")
		b.Logf("%-10s CPU %.1f µs/check, %.2f context switches/check, throughput/noaudit %.3f (rounds %d)", names[s], median(cpu[s]), median(csw[s]), median(ratios[s]), len(ratios[s]))
	}
}

func switches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}
