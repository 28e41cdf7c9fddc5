package verifier_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// BenchmarkMTLSAuditShare splits BenchmarkMTLS/ratio/keepalive's gap: the
// plain go-spiffe server, the verifier's middleware with its audit log (as
// in BenchmarkMTLS) and the same middleware without one take turns in
// interleaved rounds of 4,000 keep-alive requests over 8 clients, and the
// median ratios to plain (throughput, process CPU) of each are logged —
// what the record costs is the difference of the two.
func BenchmarkMTLSAuditShare(b *testing.B) {
	ca := testca.New(b, td, time.Now())
	serverSVID := ca.CreateX509SVID(serverID)
	clients := make([]*x509svid.SVID, 8)
	for i := range clients {
		clients[i] = genSVID(b, ca, i, i, time.Now().Add(time.Hour))
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	v := benchVerifier(b, ca)
	vn := &verifier.Verifier{Auth: v.Auth, Policy: v.Policy}
	urls := []string{
		serveTLS(b, tlsconfig.MTLSServerConfig(serverSVID, ca.X509Bundle(), tlsconfig.AuthorizeAny()), ok),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), v.Middleware(ok)),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), vn.Middleware(ok)),
	}
	names := []string{"plain", "audit", "noaudit"}
	const S = 3
	conns := make([][]*http.Client, S)
	for si := range urls {
		for i := range clients {
			c := mtlsClient(ca, clients[i], true)
			defer c.CloseIdleConnections()
			conns[si] = append(conns[si], c)
		}
	}
	ratios := make([][]float64, S)
	cpus := make([][]float64, S)
	round := 0
	for b.Loop() {
		var el, cpu [S]time.Duration
		for k := range S {
			si := (k + round) % S
			c0 := processCPU()
			el[si] = mtlsRound(b, conns[si], urls[si], 4000)
			if si == 1 {
				v.Audit.Flush()
			}
			cpu[si] = processCPU() - c0
		}
		round++
		for si := 1; si < S; si++ {
			ratios[si] = append(ratios[si], el[0].Seconds()/el[si].Seconds())
			cpus[si] = append(cpus[si], cpu[0].Seconds()/cpu[si].Seconds())
		}
	}
	for si := 1; si < S; si++ {
		slices.Sort(ratios[si])
		slices.Sort(cpus[si])
		b.Logf("%s/plain: median throughput ratio %.3f, process CPU per request plain/%s %.3f (%d interleaved rounds of 4,000 requests)", names[si], ratios[si][len(ratios[si])/2], names[si], cpus[si][len(cpus[si])/2], len(ratios[si]))
	}
}
