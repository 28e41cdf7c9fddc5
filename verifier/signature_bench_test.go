package verifier_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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
// verifier's checking, on the same 2 cores), and the crypto floor of that
// ("floor": the unsigned verifier, with clients adding one bare ECDSA P-256
// signature of the method and URL and the server checking it with the TLS
// peer's key before the verifier — no RFC 9421, no digest, no replay
// cache). Reported: the median per-round throughput ratios.
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
	floorV := benchVerifier(b, ca)
	urls := []string{
		serveTLS(b, tlsconfig.MTLSServerConfig(serverSVID, ca.X509Bundle(), tlsconfig.AuthorizeAny()), ok),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), v.Middleware(ok)),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), signed.Middleware(ok)),
		serveTLS(b, verifier.ServerTLSConfig(serverSVID, ca.X509Bundle()), floorVerify(floorV.Middleware(ok))),
	}
	conns := make([][]*http.Client, len(urls))
	for si := range urls {
		for i := range clients {
			c := mtlsClient(ca, clients[i], true)
			switch si {
			case 2:
				c.Transport = &httpsig.Transport{Base: c.Transport, Source: clients[i]}
			case 3:
				c.Transport = floorSign(c.Transport, clients[i].PrivateKey.(*ecdsa.PrivateKey))
			}
			defer c.CloseIdleConnections()
			conns[si] = append(conns[si], c)
		}
	}
	const perRound = 2000
	names := []string{"plain", "verifier", "signed", "floor"}
	var ratios [3][]float64
	var total [4]time.Duration
	round := 0
	for b.Loop() {
		var elapsed [4]time.Duration
		for k := range urls {
			si := (k + round) % len(urls)
			elapsed[si] = mtlsRound(b, conns[si], urls[si], perRound)
		}
		round++
		for i := range total {
			total[i] += elapsed[i]
		}
		ratios[0] = append(ratios[0], elapsed[0].Seconds()/elapsed[1].Seconds())
		ratios[1] = append(ratios[1], elapsed[0].Seconds()/elapsed[2].Seconds())
		ratios[2] = append(ratios[2], elapsed[3].Seconds()/elapsed[2].Seconds())
	}
	for i, name := range names {
		rate := float64(round*perRound) / total[i].Seconds()
		b.ReportMetric(rate, name+"-req/s")
	}
	for i, name := range []string{"verifier/plain", "signed/plain", "signed/floor"} {
		r := ratios[i]
		slices.Sort(r)
		b.ReportMetric(r[len(r)/2], name)
		b.Logf("%s: median throughput ratio %.3f over %d interleaved rounds of %d requests (min %.3f, max %.3f)", name, r[len(r)/2], len(r), perRound, r[0], r[len(r)-1])
	}
}

// floorSign adds a bare ECDSA signature of method and URL (the floor).
func floorSign(next http.RoundTripper, key *ecdsa.PrivateKey) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		h := sha256.Sum256([]byte(r.Method + " " + r.URL.String()))
		sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
		if err != nil {
			return nil, err
		}
		r = r.Clone(r.Context())
		r.Header.Set("X-Floor-Sig", base64.StdEncoding.EncodeToString(sig))
		return next.RoundTrip(r)
	})
}

// floorVerify checks floorSign's signature with the TLS peer's key.
func floorVerify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sig, _ := base64.StdEncoding.DecodeString(r.Header.Get("X-Floor-Sig"))
		h := sha256.Sum256([]byte(r.Method + " https://" + r.Host + r.RequestURI))
		pub, _ := r.TLS.PeerCertificates[0].PublicKey.(*ecdsa.PublicKey)
		if pub == nil || !ecdsa.VerifyASN1(pub, h[:], sig) {
			http.Error(w, "floor signature", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
