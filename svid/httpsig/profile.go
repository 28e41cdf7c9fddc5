package httpsig

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"
)

// Components are the components every agentid signature covers, in this
// order; "content-type" is added when the request has one, and
// "authorization" when it carries a bearer JWT-SVID (the JWT-SVID
// variant), as draft-ietf-wimse-http-signature requires of both.
var Components = []string{"@method", "@target-uri", "content-digest", "agentid-svid"}

// DefaultLifetime is expires - created of the signatures Transport makes.
const DefaultLifetime = 30 * time.Second

// DefaultWindow is how far from now a verifier accepts created.
const DefaultWindow = 60 * time.Second

// KeyID is the keyid of a signature made with leaf's key: the base64url
// SHA-256 of the certificate (as x5t#S256).
func KeyID(leaf *x509.Certificate) string {
	sum := sha256.Sum256(leaf.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// EncodeChain is the Agentid-Svid field value of chain (leaf first).
func EncodeChain(chain []*x509.Certificate) string {
	l := make(httpsfv.List, len(chain))
	for i, c := range chain {
		l[i] = httpsfv.NewItem(c.Raw)
	}
	s, _ := httpsfv.Marshal(l)
	return s
}

// DecodeChain parses an Agentid-Svid field value.
func DecodeChain(vals []string) ([]*x509.Certificate, error) {
	ders, err := decodeDER(vals)
	if err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, len(ders))
	for i, der := range ders {
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fail(ReasonMalformed, "%s certificate %d: %v", HeaderSVID, i, err)
		}
	}
	return chain, nil
}

// decodeDER reads the DER certificates of an Agentid-Svid field value.
func decodeDER(vals []string) ([][]byte, error) {
	if len(vals) == 0 {
		return nil, fail(ReasonComponents, "no %s header", HeaderSVID)
	}
	if size(vals) > MaxHeaderBytes {
		return nil, fail(ReasonMalformed, "%s exceeds %d bytes", HeaderSVID, MaxHeaderBytes)
	}
	l, err := httpsfv.UnmarshalList(vals)
	if err != nil || len(l) == 0 {
		return nil, fail(ReasonMalformed, "%s is not an RFC 8941 list of byte sequences: %v", HeaderSVID, err)
	}
	ders := make([][]byte, len(l))
	for i, m := range l {
		it, ok := m.(httpsfv.Item)
		der, ok2 := it.Value.([]byte)
		if !ok || !ok2 {
			return nil, fail(ReasonMalformed, "%s member %d is not a byte sequence", HeaderSVID, i)
		}
		ders[i] = der
	}
	return ders, nil
}

// signerChain is the chain the signature is checked with: the
// Agentid-Svid certificates, or, when the caller knows the certificate
// the peer authenticated with (leaf), that one — the header's first
// certificate must be it, byte for byte, and is not parsed again.
func signerChain(vals []string, leaf *x509.Certificate) ([]*x509.Certificate, error) {
	if leaf == nil {
		return DecodeChain(vals)
	}
	ders, err := decodeDER(vals)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ders[0], leaf.Raw) {
		return nil, fail(ReasonCertMismatch, "the %s certificate is not the one the peer authenticated with", HeaderSVID)
	}
	return []*x509.Certificate{leaf}, nil
}

// RequestSigner signs requests with one X.509-SVID.
type RequestSigner struct {
	Chain []*x509.Certificate // leaf first
	Key   crypto.Signer
	// Lifetime is expires - created (default DefaultLifetime).
	Lifetime time.Duration
}

// Sign sets Content-Digest (of body), Agentid-Svid, Signature-Input and
// Signature on m.Header, signing at now with a fresh nonce.
func (s *RequestSigner) Sign(m *Message, body []byte, now time.Time) (*Signed, error) {
	if len(s.Chain) == 0 || s.Key == nil {
		return nil, fmt.Errorf("httpsig: no SVID to sign with")
	}
	alg := AlgorithmOf(s.Key.Public())
	if alg == "" {
		return nil, fmt.Errorf("httpsig: no algorithm for a %T key", s.Key.Public())
	}
	life := s.Lifetime
	if life <= 0 {
		life = DefaultLifetime
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	m.Header.Set(HeaderContentDigest, ContentDigest(body))
	m.Header.Set(HeaderSVID, EncodeChain(s.Chain))
	comps := slices.Clip(Components)
	if m.Header.Get("Content-Type") != "" {
		comps = append(comps, "content-type")
	}
	if m.Header.Get("Authorization") != "" {
		comps = append(comps, "authorization")
	}
	in := NewInput(comps, Params{Created: now.Unix(), Expires: now.Add(life).Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce), KeyID: KeyID(s.Chain[0]), Alg: alg, Tag: Tag})
	base, err := Base(m, in)
	if err != nil {
		return nil, err
	}
	sig, err := Sign(s.Key, alg, base)
	if err != nil {
		return nil, err
	}
	signed := &Signed{Label: Label, Input: in, Signature: sig}
	return signed, SetHeaders(m.Header, signed)
}

// VerifyOptions tune VerifyRequest.
type VerifyOptions struct {
	// Now (default time.Now) and Window: created must be within Window of
	// Now (default DefaultWindow), and expires after Now.
	Now    time.Time
	Window time.Duration
	// Algorithms allowed (default: every asymmetric algorithm AlgorithmOf
	// names).
	Algorithms []string
	// Leaf, when set, is the certificate the peer authenticated with (its
	// TLS client certificate): the Agentid-Svid leaf must be it
	// (ReasonCertMismatch otherwise), and Verified.Chain is just Leaf.
	Leaf *x509.Certificate
}

// Verified is a signature that VerifyRequest accepted.
type Verified struct {
	Signed *Signed
	Params Params
	Chain  []*x509.Certificate // from Agentid-Svid, not yet checked against a bundle
	Base   []byte
}

// Evidence is what the audit log keeps of v.
func (v *Verified) Evidence() Evidence {
	return Evidence{Label: v.Signed.Label, Base: string(v.Base), Signature: v.Signed.Signature}
}

// VerifyRequest checks the agentid signature of m against body as
// received: the profile (components, parameters, tag), the algorithm of
// the Agentid-Svid leaf's key, keyid, the signature, the Content-Digest,
// and created/expires against the window. Whose certificate it is (the
// TLS peer's, one of the bundle) and nonce replay are for the caller.
func VerifyRequest(m *Message, body []byte, opts VerifyOptions) (*Verified, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	s, err := ParseTagged(m.Header, Tag)
	if err != nil {
		return nil, err
	}
	p, err := checkProfile(s.Input, m.Header.Get("Authorization") != "", m.Header.Get("Content-Type") != "")
	if err != nil {
		return nil, err
	}
	chain, err := signerChain(m.Header.Values(HeaderSVID), opts.Leaf)
	if err != nil {
		return nil, err
	}
	if err := checkAlg(p.Alg, chain[0], opts.Algorithms); err != nil {
		return nil, err
	}
	if p.KeyID != "" && p.KeyID != KeyID(chain[0]) {
		return nil, fail(ReasonCertMismatch, "keyid %q does not name the %s certificate", p.KeyID, HeaderSVID)
	}
	base, err := Base(m, s.Input)
	if err != nil {
		return nil, err
	}
	if err := Verify(chain[0].PublicKey, AlgorithmOf(chain[0].PublicKey), base, s.Signature); err != nil {
		return nil, err
	}
	if err := CheckContentDigest(m.Header.Values(HeaderContentDigest), body); err != nil {
		return nil, err
	}
	if err := checkTimes(p, opts.Now, opts.Window); err != nil {
		return nil, err
	}
	return &Verified{Signed: s, Params: p, Chain: chain, Base: base}, nil
}

// checkProfile holds an Input to the agentid profile: the required
// components (and content-type, authorization when the request has them)
// and the parameters created, expires, nonce and tag="agentid".
func checkProfile(in Input, hasAuthorization, hasContentType bool) (Params, error) {
	p, err := in.Params()
	if err != nil {
		return p, err
	}
	var missing []string
	for _, c := range Components {
		if !in.Covers(c) {
			missing = append(missing, c)
		}
	}
	if hasContentType && !in.Covers("content-type") {
		missing = append(missing, "content-type")
	}
	if hasAuthorization && !in.Covers("authorization") {
		missing = append(missing, "authorization")
	}
	if p.Created == 0 {
		missing = append(missing, ";created")
	}
	if p.Expires == 0 {
		missing = append(missing, ";expires")
	}
	if p.Nonce == "" {
		missing = append(missing, ";nonce")
	}
	if p.Tag != Tag {
		missing = append(missing, ";tag=\""+Tag+"\"")
	}
	if len(missing) > 0 {
		return p, fail(ReasonComponents, "the signature does not cover %s", strings.Join(missing, ", "))
	}
	if len(p.Nonce) > 256 {
		return p, fail(ReasonMalformed, "nonce of %d bytes exceeds 256", len(p.Nonce))
	}
	return p, nil
}

func checkAlg(alg string, leaf *x509.Certificate, allowed []string) error {
	keyAlg := AlgorithmOf(leaf.PublicKey)
	switch {
	case keyAlg == "":
		return fail(ReasonAlgorithm, "the certificate's %T key has no supported algorithm", leaf.PublicKey)
	case alg != "" && alg != keyAlg:
		return fail(ReasonAlgorithm, "alg %q is not the algorithm of the certificate's key (%s)", alg, keyAlg)
	case len(allowed) > 0 && !slices.Contains(allowed, keyAlg):
		return fail(ReasonAlgorithm, "algorithm %s is not allowed (allowed: %s)", keyAlg, strings.Join(allowed, ", "))
	}
	return nil
}

func checkTimes(p Params, now time.Time, window time.Duration) error {
	created, expires := time.Unix(p.Created, 0), time.Unix(p.Expires, 0)
	switch {
	case expires.Before(created):
		return fail(ReasonMalformed, "expires %d is before created %d", p.Expires, p.Created)
	case created.Before(now.Add(-window)) || created.After(now.Add(window)):
		return fail(ReasonStale, "created %s is not within %s of now (%s)", created.UTC().Format(time.RFC3339), window, now.UTC().Format(time.RFC3339))
	case !now.Before(expires):
		return fail(ReasonStale, "the signature expired at %s", expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// RequestMessage is the Message of a request as a server received it
// (the target URI from the scheme, Host and request-target as sent).
func RequestMessage(r *http.Request) *Message {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	if !strings.HasPrefix(target, "/") && strings.Contains(target, "://") {
		// absolute-form (a request to a forward proxy): the target URI as sent
		return &Message{Method: r.Method, TargetURI: target, Header: r.Header}
	}
	return &Message{Method: r.Method, TargetURI: scheme + "://" + r.Host + target, Header: r.Header}
}
