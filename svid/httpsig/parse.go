package httpsig

import (
	"net/http"

	"github.com/dunglas/httpsfv"
)

// Header names.
const (
	HeaderSignature      = "Signature"
	HeaderSignatureInput = "Signature-Input"
	HeaderContentDigest  = "Content-Digest"
	// HeaderSVID carries the signer's X.509-SVID chain, leaf first: an
	// RFC 8941 List of Byte Sequences of DER certificates (the encoding of
	// RFC 9440's Client-Cert-Chain). It is a covered component, so the
	// signature binds the certificate it is checked with.
	HeaderSVID = "Agentid-Svid"
	// Label is the label agentid signs under, and Tag its tag parameter.
	Label = "agentid"
	Tag   = "agentid"
)

// MaxHeaderBytes bounds Signature, Signature-Input and Agentid-Svid as read.
const MaxHeaderBytes = 32 << 10

// Signed is one signature as received: its label, input and value.
type Signed struct {
	Label     string
	Input     Input
	Signature []byte
}

// Parse reads the signature labelled label from h's Signature-Input and
// Signature fields. A missing signature is ReasonMissing; anything that is
// not valid RFC 8941 (or not the shapes RFC 9421 requires) ReasonMalformed.
func Parse(h http.Header, label string) (*Signed, error) {
	inputs, sigs, err := dictionaries(h)
	if err != nil {
		return nil, err
	}
	return member(inputs, sigs, label)
}

// ParseTagged reads the one signature whose tag parameter is tag, whatever
// its label (RFC 9421 §7.2.5: labels are not for choosing a signature;
// draft-ietf-wimse-http-signature finds its signature by tag the same
// way). None is ReasonMissing — signatures with other tags are not ours
// to judge —, more than one ReasonMalformed.
func ParseTagged(h http.Header, tag string) (*Signed, error) {
	inputs, sigs, err := dictionaries(h)
	if err != nil {
		return nil, err
	}
	var labels []string
	for _, name := range inputs.Names() {
		m, _ := inputs.Get(name)
		if il, ok := m.(httpsfv.InnerList); ok && il.Params != nil {
			if t, _ := il.Params.Get("tag"); t == tag {
				labels = append(labels, name)
			}
		}
	}
	switch len(labels) {
	case 0:
		return nil, fail(ReasonMissing, "no signature tagged %q (labels: %v)", tag, inputs.Names())
	case 1:
		return member(inputs, sigs, labels[0])
	}
	return nil, fail(ReasonMalformed, "%d signatures are tagged %q (%v): one is allowed", len(labels), tag, labels)
}

// dictionaries parses the Signature-Input and Signature fields.
func dictionaries(h http.Header) (inputs, sigs *httpsfv.Dictionary, err error) {
	inVals, sigVals := h.Values(HeaderSignatureInput), h.Values(HeaderSignature)
	if len(inVals) == 0 && len(sigVals) == 0 {
		return nil, nil, fail(ReasonMissing, "the request has no Signature-Input or Signature")
	}
	if size(inVals) > MaxHeaderBytes || size(sigVals) > MaxHeaderBytes {
		return nil, nil, fail(ReasonMalformed, "Signature or Signature-Input exceeds %d bytes", MaxHeaderBytes)
	}
	if inputs, err = httpsfv.UnmarshalDictionary(inVals); err != nil {
		return nil, nil, fail(ReasonMalformed, "Signature-Input is not an RFC 8941 dictionary: %v", err)
	}
	if sigs, err = httpsfv.UnmarshalDictionary(sigVals); err != nil {
		return nil, nil, fail(ReasonMalformed, "Signature is not an RFC 8941 dictionary: %v", err)
	}
	return inputs, sigs, nil
}

// member is the signature labelled label.
func member(inputs, sigs *httpsfv.Dictionary, label string) (*Signed, error) {
	im, ok1 := inputs.Get(label)
	sm, ok2 := sigs.Get(label)
	switch {
	case !ok1 && !ok2:
		return nil, fail(ReasonMissing, "no signature labelled %q (labels: Signature-Input %v, Signature %v)", label, inputs.Names(), sigs.Names())
	case !ok1:
		return nil, fail(ReasonMalformed, "Signature %q has no Signature-Input", label)
	case !ok2:
		return nil, fail(ReasonMalformed, "Signature-Input %q has no Signature", label)
	}
	il, ok := im.(httpsfv.InnerList)
	if !ok {
		return nil, fail(ReasonMalformed, "Signature-Input %q is not an inner list", label)
	}
	for _, it := range il.Items {
		if _, ok := it.Value.(string); !ok {
			return nil, fail(ReasonMalformed, "Signature-Input %q lists a component that is not a string", label)
		}
	}
	si, ok := sm.(httpsfv.Item)
	if !ok {
		return nil, fail(ReasonMalformed, "Signature %q is not a byte sequence", label)
	}
	sig, ok := si.Value.([]byte)
	if !ok {
		return nil, fail(ReasonMalformed, "Signature %q is not a byte sequence", label)
	}
	return &Signed{Label: label, Input: Input{Components: il}, Signature: sig}, nil
}

func size(vals []string) int {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	return n
}

// SetHeaders adds the Signature-Input and Signature members of s to h.
func SetHeaders(h http.Header, s *Signed) error {
	in := httpsfv.NewDictionary()
	in.Add(s.Label, s.Input.Components)
	sig := httpsfv.NewDictionary()
	sig.Add(s.Label, httpsfv.NewItem(s.Signature))
	a, err := httpsfv.Marshal(in)
	if err != nil {
		return err
	}
	b, err := httpsfv.Marshal(sig)
	if err != nil {
		return err
	}
	h.Set(HeaderSignatureInput, a)
	h.Set(HeaderSignature, b)
	return nil
}
