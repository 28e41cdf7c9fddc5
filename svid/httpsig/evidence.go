package httpsig

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Evidence is a verified request signature as the audit log keeps it: the
// signature base (which holds the covered components' values, the
// certificate chain and the parameters) and the signature. With the trust
// bundle alone, VerifyEvidence shows which task's key signed which
// method, target URI and body digest, when.
type Evidence struct {
	Label     string `json:"label"`
	Base      string `json:"base"`
	Signature []byte `json:"sig"`
}

// Proven is what VerifyEvidence established.
type Proven struct {
	ID            spiffeid.ID // the signer's SPIFFE ID (from its X.509-SVID)
	Method        string
	TargetURI     string
	ContentDigest string
	ContentType   string // "" when not covered
	Authorization bool   // the signature also covers an Authorization field
	Created       time.Time
	Expires       time.Time
	Nonce         string
	KeyID         string
	Alg           string
}

const paramsPrefix = `"@signature-params": `

// VerifyEvidence checks e offline: the base is well formed and follows
// the agentid profile, the Agentid-Svid chain in it is an X.509-SVID of
// bundle at the signature's created time, and the signature over the base
// verifies with that SVID's key.
func VerifyEvidence(e Evidence, bundle x509bundle.Source) (*Proven, error) {
	lines := strings.Split(e.Base, "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, paramsPrefix) {
		return nil, fail(ReasonMalformed, "the signature base does not end with @signature-params")
	}
	d, err := httpsfv.UnmarshalDictionary([]string{"s=" + strings.TrimPrefix(last, paramsPrefix)})
	if err != nil {
		return nil, fail(ReasonMalformed, "@signature-params: %v", err)
	}
	m, _ := d.Get("s")
	il, ok := m.(httpsfv.InnerList)
	if !ok {
		return nil, fail(ReasonMalformed, "@signature-params is not an inner list")
	}
	in := Input{Components: il}
	if in.String() != strings.TrimPrefix(last, paramsPrefix) {
		return nil, fail(ReasonMalformed, "@signature-params is not in canonical form")
	}
	values, err := baseValues(lines[:len(lines)-1], in)
	if err != nil {
		return nil, err
	}
	p, err := checkProfile(in, values["authorization"] != "", false)
	if err != nil {
		return nil, err
	}
	chain, err := DecodeChain([]string{values["agentid-svid"]})
	if err != nil {
		return nil, err
	}
	if err := checkAlg(p.Alg, chain[0], nil); err != nil {
		return nil, err
	}
	if p.KeyID != "" && p.KeyID != KeyID(chain[0]) {
		return nil, fail(ReasonCertMismatch, "keyid %q does not name the %s certificate", p.KeyID, HeaderSVID)
	}
	created := time.Unix(p.Created, 0)
	id, _, err := x509svid.Verify(chain, bundle, x509svid.WithTime(created))
	if err != nil {
		return nil, fail(ReasonUntrusted, "the signer's certificate at created (%s): %v", created.UTC().Format(time.RFC3339), err)
	}
	if err := Verify(chain[0].PublicKey, AlgorithmOf(chain[0].PublicKey), []byte(e.Base), e.Signature); err != nil {
		return nil, err
	}
	return &Proven{ID: id, Method: values["@method"], TargetURI: values["@target-uri"], ContentDigest: values["content-digest"],
		ContentType: values["content-type"], Authorization: values["authorization"] != "", Created: created, Expires: time.Unix(p.Expires, 0),
		Nonce: p.Nonce, KeyID: p.KeyID, Alg: AlgorithmOf(chain[0].PublicKey)}, nil
}

// baseValues reads the component lines of a base: exactly one per covered
// component, in order, each "<identifier>: <value>".
func baseValues(lines []string, in Input) (map[string]string, error) {
	items := in.Components.Items
	if len(lines) != len(items) {
		return nil, fail(ReasonMalformed, "the signature base has %d component lines for %d components", len(lines), len(items))
	}
	out := make(map[string]string, len(items))
	for i, it := range items {
		id, err := httpsfv.Marshal(it)
		if err != nil {
			return nil, fail(ReasonMalformed, "component identifier: %v", err)
		}
		v, ok := strings.CutPrefix(lines[i], id+": ")
		if !ok {
			return nil, fail(ReasonMalformed, "line %d of the signature base is not %s", i+1, id)
		}
		if len(it.Params.Names()) == 0 {
			out[it.Value.(string)] = v
		}
	}
	return out, nil
}

// String renders p for a person.
func (p *Proven) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "signed by %s (key %s, %s) at %s, expiring %s: %s %s, %s",
		p.ID, p.KeyID, p.Alg, p.Created.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339),
		p.Method, p.TargetURI, p.ContentDigest)
	return b.String()
}
