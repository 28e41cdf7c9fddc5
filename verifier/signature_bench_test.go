package verifier_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// BenchmarkSignedMTLS: keep-alive mTLS HTTP (8 clients, handler writes
// "ok") in interleaved rounds of the same number of requests: a plain
// go-spiffe server with unsigned clients ("plain"), Verifier.Middleware
// (1,000-rule policy, audit) with unsigned clients ("verifier"), and the
// same verifier with signatures required and clients signing every request
// with their X.509-SVID key ("signed": the agent's signing and the
// verifier's checking, on the same 2 cores). Reported: the median per-round
// throughput ratios to plain.
func BenchmarkSignedMTLS(b *testing.B) {
	ca := testca.New(b, td, time.Now())
	serverSVID := ca.CreateX509SVID(serverID)
	clients := make([]*x509svid.SVID, 8)
	for i := range clients {
		clients[i] = genSVID(b, ca, i, i, time.Now().Add(time.Hour))
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	v := benchVerifier(b, ca)
	signed := benchVerifier(b, ca)
	signed.Signatures = &verifier.Signatures{Require: true}
	urls := []string{
		serveTLS(b, tlsconfig.MTLSServerConfig(serverSVID, ca.X509Bundle(), tlsconfig.AuthorizeAny()), ok),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), v.Middleware(ok)),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), signed.Middleware(ok)),
	}
	conns := make([][]*http.Client, len(urls))
	for si := range urls {
		for i := range clients {
			c := mtlsClient(ca, clients[i], true)
			if si == 2 {
				c.Transport = &httpsig.Transport{Base: c.Transport, Source: clients[i]}
			}
			defer c.CloseIdleConnections()
			conns[si] = append(conns[si], c)
		}
	}
	const perRound = 2000
	var ratios [2][]float64
	var total [3]time.Duration
	round := 0
	for b.Loop() {
		var elapsed [3]time.Duration
		for k := range 3 {
			si := (k + round) % 3
			elapsed[si] = mtlsRound(b, conns[si], urls[si], perRound)
		}
		round++
		for i := range total {
			total[i] += elapsed[i]
		}
		ratios[0] = append(ratios[0], elapsed[0].Seconds()/elapsed[1].Seconds())
		ratios[1] = append(ratios[1], elapsed[0].Seconds()/elapsed[2].Seconds())
	}
	for i, name := range []string{"plain", "verifier", "signed"} {
		rate := float64(round*perRound) / total[i].Seconds()
		b.ReportMetric(rate, name+"-req/s")
	}
	for i, name := range []string{"verifier/plain", "signed/plain"} {
		r := ratios[i]
		slices.Sort(r)
		b.ReportMetric(r[len(r)/2], name)
		b.Logf("%s: median throughput ratio %.3f over %d interleaved rounds of %d requests (min %.3f, max %.3f)", name, r[len(r)/2], len(r), perRound, r[0], r[len(r)-1])
	}
}
