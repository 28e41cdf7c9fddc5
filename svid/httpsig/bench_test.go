package httpsig_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
)

// BenchmarkSignVerify: the agent's cost of signing a request (Content-Digest
// of a 1 KiB body, the certificate header, the signature base, an
// ECDSA P-256 signature, the header fields) and the verifier's cost of
// checking it (parsing, profile, certificate, base, signature, digest,
// times), next to the crypto/ecdsa floor — one P-256 sign and verify of a
// SHA-256 digest — in the same run.
func BenchmarkSignVerify(b *testing.B) {
	ca := testca.New(b, td, t0)
	svid := ca.CreateX509SVID(taskA)
	key := svid.PrivateKey.(*ecdsa.PrivateKey)
	body := make([]byte, 1024)
	signer := httpsig.RequestSigner{Chain: svid.Certificates, Key: key}
	message := func() *httpsig.Message {
		return &httpsig.Message{Method: "POST", TargetURI: "https://tickets.internal:8443/tickets?x=1", Header: http.Header{"Content-Type": {"application/json"}}}
	}
	digest := sha256.Sum256(body)
	b.Run("floor/ecdsa-p256-sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := signer.Sign(message(), body, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	b.Run("floor/ecdsa-p256-verify", func(b *testing.B) {
		for b.Loop() {
			if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) {
				b.Fatal("no")
			}
		}
	})
	signed := message()
	if _, err := signer.Sign(signed, body, t0); err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := httpsig.VerifyRequest(signed, body, httpsig.VerifyOptions{Now: t0}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-tls-leaf", func(b *testing.B) {
		// as the verifier does behind mTLS: the signer is the TLS peer's
		// certificate, already parsed by the handshake
		for b.Loop() {
			if _, err := httpsig.VerifyRequest(signed, body, httpsig.VerifyOptions{Now: t0, Leaf: svid.Certificates[0]}); err != nil {
				b.Fatal(err)
			}
		}
	})
	v, _ := httpsig.VerifyRequest(signed, body, httpsig.VerifyOptions{Now: t0})
	b.Run("verify-evidence-offline", func(b *testing.B) {
		bundle := ca.X509Bundle()
		for b.Loop() {
			if _, err := httpsig.VerifyEvidence(v.Evidence(), bundle); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSignVerifyRatio: the same operations as BenchmarkSignVerify,
// interleaved in rounds of 200 (floor, ours, ours, floor, …) so that load
// from other processes on a shared machine hits both alike; reported: the
// median per-round time ratio to the crypto/ecdsa floor, and the medians
// of the per-operation times.
func BenchmarkSignVerifyRatio(b *testing.B) {
	ca := testca.New(b, td, t0)
	svid := ca.CreateX509SVID(taskA)
	key := svid.PrivateKey.(*ecdsa.PrivateKey)
	body := make([]byte, 1024)
	digest := sha256.Sum256(body)
	signer := httpsig.RequestSigner{Chain: svid.Certificates, Key: key}
	message := func() *httpsig.Message {
		return &httpsig.Message{Method: "POST", TargetURI: "https://tickets.internal:8443/tickets?x=1", Header: http.Header{"Content-Type": {"application/json"}}}
	}
	signed := message()
	if _, err := signer.Sign(signed, body, t0); err != nil {
		b.Fatal(err)
	}
	sig, _ := ecdsa.SignASN1(rand.Reader, key, digest[:])
	ops := map[string]func(){
		"floor-sign":   func() { ecdsa.SignASN1(rand.Reader, key, digest[:]) },
		"sign":         func() { signer.Sign(message(), body, t0) },
		"floor-verify": func() { ecdsa.VerifyASN1(&key.PublicKey, digest[:], sig) },
		"verify":       func() { httpsig.VerifyRequest(signed, body, httpsig.VerifyOptions{Now: t0}) },
		"verify-tls-leaf": func() {
			httpsig.VerifyRequest(signed, body, httpsig.VerifyOptions{Now: t0, Leaf: svid.Certificates[0]})
		},
	}
	pairs := [][2]string{{"sign", "floor-sign"}, {"verify", "floor-verify"}, {"verify-tls-leaf", "floor-verify"}}
	const n = 200
	timeOf := func(name string) time.Duration {
		start := time.Now()
		for range n {
			ops[name]()
		}
		return time.Since(start) / n
	}
	ratios := make([][]float64, len(pairs))
	per := map[string][]float64{}
	round := 0
	for b.Loop() {
		for i, p := range pairs {
			var ours, floor time.Duration
			if round%2 == 0 {
				ours, floor = timeOf(p[0]), timeOf(p[1])
			} else {
				floor, ours = timeOf(p[1]), timeOf(p[0])
			}
			ratios[i] = append(ratios[i], ours.Seconds()/floor.Seconds())
			per[p[0]] = append(per[p[0]], float64(ours.Microseconds()))
			per[p[1]] = append(per[p[1]], float64(floor.Microseconds()))
		}
		round++
	}
	med := func(x []float64) float64 { slices.Sort(x); return x[len(x)/2] }
	for i, p := range pairs {
		b.ReportMetric(med(ratios[i]), p[0]+"/floor")
	}
	for name, x := range per {
		b.Logf("%s: median %.0f µs per operation over %d rounds", name, med(x), len(x))
	}
}
