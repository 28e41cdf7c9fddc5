package httpsig_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid/httpsig"
	"testing"
)

// A Transport signs every request with the task's current X.509-SVID;
// here the SVID source is a test CA's, in an agent a workloadapi.X509Source.
func ExampleTransport() {
	ca := exampleCA()
	client := &http.Client{Transport: &httpsig.Transport{Source: ca.CreateX509SVID(taskA)}}
	_ = client // client.Post("https://tickets.internal/tickets", "application/json", body)
	fmt.Println(httpsig.Components)
	// Output: [@method @target-uri content-digest agentid-svid]
}

// A service (or the agentid verifier) checks a signed request as it
// received it; a body changed on the way is refused with its reason.
func ExampleVerifyRequest() {
	ca := exampleCA()
	svid := ca.CreateX509SVID(taskA)
	body := []byte(`{"amount":10}`)
	msg := &httpsig.Message{Method: "POST", TargetURI: "https://pay.internal/pay", Header: http.Header{}}
	signer := httpsig.RequestSigner{Chain: svid.Certificates, Key: svid.PrivateKey}
	if _, err := signer.Sign(msg, body, t0); err != nil {
		panic(err)
	}
	v, err := httpsig.VerifyRequest(msg, body, httpsig.VerifyOptions{Now: t0.Add(time.Second), Leaf: svid.Certificates[0]})
	fmt.Println(err, v.Params.Tag, v.Params.Alg, v.Signed.Input.Covers("content-digest"))
	_, err = httpsig.VerifyRequest(msg, []byte(`{"amount":99}`), httpsig.VerifyOptions{Now: t0.Add(time.Second)})
	fmt.Println(httpsig.ReasonOf(err))
	// Output:
	// <nil> agentid ecdsa-p256-sha256 true
	// signature_digest_mismatch
}

// ContentDigest is RFC 9530's sha-256 Content-Digest.
func ExampleContentDigest() {
	fmt.Println(httpsig.ContentDigest([]byte(`{"hello": "world"}`)))
	// Output: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:
}

func exampleCA() *testca.CA { return testca.New(exampleTB{}, td, t0) }

// exampleTB is the testing.TB an Example hands the test CA.
type exampleTB struct{ testing.TB }

func (exampleTB) Helper()                   {}
func (exampleTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
