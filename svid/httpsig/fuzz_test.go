package httpsig_test

import (
	"net/http"
	"testing"

	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// FuzzParse: no Signature / Signature-Input / Agentid-Svid value crashes
// the parser or the base construction.
func FuzzParse(f *testing.F) {
	f.Add(`agentid=("@method" "@target-uri" "content-digest" "agentid-svid");created=1;expires=2;nonce="n";tag="agentid"`, `agentid=:AAAA:`, `:AAAA:`)
	f.Add(`sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss"`, `sig-b22=:LjbtqU==:`, ``)
	f.Add(`agentid=("@query-param";name=1 "x";bs)`, `agentid=1`, `(`)
	f.Fuzz(func(t *testing.T, in, sig, chain string) {
		h := http.Header{}
		h.Set("Signature-Input", in)
		h.Set("Signature", sig)
		h.Set(httpsig.HeaderSVID, chain)
		m := &httpsig.Message{Method: "GET", TargetURI: "https://a.example/p?Pet=dog", Header: h}
		if s, err := httpsig.Parse(h, "agentid"); err == nil {
			_, _ = httpsig.Base(m, s.Input)
		}
		_, _ = httpsig.VerifyRequest(m, nil, httpsig.VerifyOptions{})
		_, _ = httpsig.VerifyEvidence(httpsig.Evidence{Base: in + "\n\"@signature-params\": " + sig}, x509bundle.New(td))
	})
}
