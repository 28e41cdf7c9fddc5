package verifier

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Signatures configures the pipeline's signature stage: agent-signed
// requests (RFC 9421 with the task's X.509-SVID key, svid/httpsig). With
// it set, a request that carries a signature is verified — covered
// components, recomputed body digest, signer bound to the authenticated
// peer, created window, nonce — and refused with a signature_* reason if
// anything fails; a verified signature goes into the audit record. A
// request without one is refused when Require is set, or when the
// deciding allow rule says require_signature. Without Signatures, the
// signature headers are not read (and a rule's require_signature refuses).
type Signatures struct {
	// Require: every request must carry a verified signature.
	Require bool
	// Window: created must be within Window of now (default
	// httpsig.DefaultWindow); nonces are remembered for twice that and
	// one second (past created + Window).
	Window time.Duration
	// Algorithms allowed (default every one httpsig.AlgorithmOf names).
	Algorithms []string
	// MaxNonces bounds the replay cache (default 1,000,000 entries, about
	// 85 MB): when it is full of nonces still inside the window, signed
	// requests are refused (signature_nonce_capacity) rather than a nonce
	// forgotten early. One peer holds at most a sixteenth of it (at least
	// min(MaxNonces, 1024)), so that one task cannot lock the others out.
	MaxNonces int
	// RecordBody also puts the body of a verified signed request into the
	// audit record (audit.AgentSignature.Body), when it is at most
	// MaxRecordedBody bytes (default 64 KiB), so that a receipt proves the
	// body and not only its digest. Off by default: the log would hold
	// request payloads.
	RecordBody      bool
	MaxRecordedBody int

	once   sync.Once
	nonces *nonceCache
}

// SignedRequest is what a front-end gives the signature stage: the
// request as received and its body.
type SignedRequest struct {
	Message httpsig.Message
	Body    []byte
	// BodyKnown is false when the front-end did not receive the body
	// (ext_authz without with_request_body, or a truncated one): a
	// signature is then refused as signature_unverifiable.
	BodyKnown bool
}

// HasSignature reports whether h carries Signature or Signature-Input.
func HasSignature(h http.Header) bool {
	return len(h[http.CanonicalHeaderKey(httpsig.HeaderSignature)]) > 0 || len(h[http.CanonicalHeaderKey(httpsig.HeaderSignatureInput)]) > 0
}

func (s *Signatures) window() time.Duration {
	if s.Window > 0 {
		return s.Window
	}
	return httpsig.DefaultWindow
}

func (s *Signatures) maxRecordedBody() int {
	if s.MaxRecordedBody > 0 {
		return s.MaxRecordedBody
	}
	return 64 << 10
}

func (s *Signatures) cache() *nonceCache {
	s.once.Do(func() {
		n := s.MaxNonces
		if n <= 0 {
			n = 1_000_000
		}
		s.nonces = newNonceCache(n)
	})
	return s.nonces
}

// checkSignature is the signature stage, after authentication: false
// when r is now the refusal.
func (v *Verifier) checkSignature(q *Query, now time.Time, r *Result) bool {
	s := v.Signatures
	if s == nil {
		return true
	}
	if q.Signed == nil || !HasSignature(q.Signed.Message.Header) {
		return s.unsigned(q, r)
	}
	if !q.Signed.BodyKnown {
		r.sig = rawSignature(q.Signed.Message.Header)
		return refuseSignature(q, r, &httpsig.Error{Reason: httpsig.ReasonUnverifiable, Err: errors.New("the body was not received, so its Content-Digest cannot be checked (ext_authz: enable with_request_body)")})
	}
	leaf := credentialLeaf(&q.Credential)
	ver, err := httpsig.VerifyRequest(&q.Signed.Message, q.Signed.Body, httpsig.VerifyOptions{Now: now, Window: s.window(), Algorithms: s.Algorithms, Leaf: leaf})
	if httpsig.ReasonOf(err) == httpsig.ReasonMissing {
		return s.unsigned(q, r) // only signatures of other applications (other tags)
	}
	if err == nil && leaf == nil {
		err = v.bindSigner(&r.Peer, ver.Chain, now)
	}
	if err == nil {
		id := r.Peer.id.String()
		err = s.cache().addFor(id, nonceKey(id, ver.Params.Nonce), now, nonceLife(now, time.Unix(ver.Params.Created, 0), s.window()))
	}
	if err != nil {
		r.sig = rawSignature(q.Signed.Message.Header)
		return refuseSignature(q, r, err)
	}
	e := ver.Evidence()
	r.sig = &audit.AgentSignature{Label: e.Label, Base: e.Base, Sig: e.Signature}
	if s.RecordBody && len(q.Signed.Body) <= s.maxRecordedBody() {
		r.sig.Body = bytes.Clone(q.Signed.Body) // the record outlives the request's buffer
	}
	r.signed = true
	return true
}

// unsigned is the signature stage for a request without an agentid
// signature: refused when every request must be signed, passed on
// otherwise (a rule's require_signature is enforced after the policy).
func (s *Signatures) unsigned(q *Query, r *Result) bool {
	if !s.Require {
		return true
	}
	reason := "every request must be signed by the agent (signatures.require)"
	if q.Signed == nil {
		return refuseSignature(q, r, &httpsig.Error{Reason: httpsig.ReasonUnverifiable, Err: fmt.Errorf("%s, and the %s front-end cannot pass a signed request", reason, q.Frontend)})
	}
	return refuseSignature(q, r, &httpsig.Error{Reason: httpsig.ReasonMissing, Err: errors.New(reason)})
}

// bindSigner holds the signing certificate of a peer that authenticated
// without one (a JWT-SVID) to it: a certificate of the bundle naming the
// same SPIFFE ID. (With a certificate — the TLS peer's, or the one Envoy
// forwarded — VerifyRequest requires the signer to be that very
// certificate: VerifyOptions.Leaf.)
func (v *Verifier) bindSigner(p *Peer, chain []*x509.Certificate, now time.Time) error {
	id, _, err := x509svid.Verify(chain, v.Auth.cfg.X509Bundles, x509svid.WithTime(now))
	if err != nil {
		return &httpsig.Error{Reason: httpsig.ReasonUntrusted, Err: fmt.Errorf("the %s certificate: %v", httpsig.HeaderSVID, err)}
	}
	if id != p.id {
		return &httpsig.Error{Reason: httpsig.ReasonCertMismatch, Err: fmt.Errorf("the %s certificate names %s, the credential %s", httpsig.HeaderSVID, id, p.id)}
	}
	return nil
}

// credentialLeaf is the certificate a credential authenticated with (nil
// for a JWT-SVID).
func credentialLeaf(c *Credential) *x509.Certificate {
	switch c.Kind {
	case CredentialX509, CredentialX509Verified:
		if len(c.Chain) > 0 {
			return c.Chain[0]
		}
	case CredentialPEM:
		if chain, err := parsePEMChain(c.Value); err == nil && len(chain) > 0 {
			return chain[0]
		}
	}
	return nil
}

// refuseSignature makes r the refusal of a signature (unauthenticated,
// with the signature_* reason as its code).
func refuseSignature(q *Query, r *Result, err error) bool {
	code := httpsig.ReasonOf(err)
	if code == "" {
		code = httpsig.ReasonInvalid
	}
	r.Outcome, r.Code, r.Action = Unauthenticated, code, boundedAction(q.Action)
	r.Decision = Decision{}
	r.Decision.Reason = "verifier: " + err.Error()
	return false
}

// rawSignature is what a refused signature leaves in the audit record.
func rawSignature(h http.Header) *audit.AgentSignature {
	return &audit.AgentSignature{Input: cut4k(fieldJoin(h.Values(httpsig.HeaderSignatureInput))), Value: cut4k(fieldJoin(h.Values(httpsig.HeaderSignature)))}
}

func fieldJoin(v []string) string {
	var b bytes.Buffer
	for i, s := range v {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s)
	}
	return b.String()
}

func cut4k(s string) string {
	if len(s) > 4096 {
		return s[:4096] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

// requireSigned refuses an allow whose rule requires a signature that the
// request did not carry (verified).
func requireSigned(r *Result) {
	if !r.Decision.Allow || !r.Decision.RequireSignature || r.signed {
		return
	}
	r.Outcome, r.Code = Unauthenticated, httpsig.ReasonMissing
	r.Decision.Allow = false
	r.Decision.Reason = "verifier: " + httpsig.ReasonMissing + ": the allowing rule requires a request signed by the agent (require_signature)"
}

// nonceLife is how long from now (its first use) a nonce is remembered:
// past every time the same signature could pass again. It passes while
// created is within window of the clock, that is up to and including
// created + window (expires only narrows that, so it is not waited for:
// a signer's far-off expires cannot pin entries in the bounded cache);
// since created >= now - window, now + 2·window already reaches it, and
// one second more covers the inclusive edge and created's whole seconds.
func nonceLife(now, created time.Time, window time.Duration) time.Duration {
	until := now.Add(2 * window)
	if c := created.Add(window); c.After(until) {
		until = c
	}
	return until.Add(time.Second).Sub(now)
}

// nonceKey is the replay cache's key for a peer's nonce: 16 bytes of
// SHA-256, so an entry's size does not depend on the nonce.
func nonceKey(peer, nonce string) [16]byte {
	h := sha256.New()
	h.Write([]byte(peer))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	var k [16]byte
	copy(k[:], h.Sum(nil))
	return k
}

// nonceCache remembers nonces until they expire, in a map and a FIFO of
// insertion order (expiries are monotonic: now + the same lifetime), up
// to max entries.
type nonceCache struct {
	mu   sync.Mutex
	max  int
	seen map[[16]byte]int64
	fifo []nonceEntry
	head int
	// perPeer bounds one peer's live nonces (perPeerShare(max)), so that
	// one task cannot fill the cache and lock every task out; held counts
	// them by a hash of the peer.
	perPeer int
	held    map[uint64]int
}

type nonceEntry struct {
	key     [16]byte
	expires int64
	peer    uint64
}

func newNonceCache(max int) *nonceCache {
	return &nonceCache{max: max, seen: make(map[[16]byte]int64), perPeer: perPeerShare(max), held: make(map[uint64]int)}
}

// perPeerShare is one peer's share of a cache of max nonces: a sixteenth
// (62,500 of the default 1,000,000: 516 signed requests a second for the
// 121 s a nonce lives), but never less than min(max, 1024).
func perPeerShare(n int) int {
	return max(n/16, min(n, 1024))
}

// add remembers key without a peer share (tests).
func (c *nonceCache) add(key [16]byte, now time.Time, life time.Duration) error {
	return c.addFor("", key, now, life)
}

// addFor remembers peer's nonce key until now+life, refusing a replay,
// a full cache and a peer over its share.
func (c *nonceCache) addFor(peer string, key [16]byte, now time.Time, life time.Duration) error {
	t := now.UnixNano()
	ph := peerHash(peer)
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.head < len(c.fifo) && c.fifo[c.head].expires <= t {
		e := c.fifo[c.head]
		if c.seen[e.key] == e.expires {
			delete(c.seen, e.key)
		}
		if n := c.held[e.peer] - 1; n > 0 {
			c.held[e.peer] = n
		} else {
			delete(c.held, e.peer)
		}
		c.head++
	}
	if c.head > len(c.fifo)/2 && c.head > 1024 {
		c.fifo = append(c.fifo[:0], c.fifo[c.head:]...)
		c.head = 0
	}
	if exp, ok := c.seen[key]; ok && exp > t {
		return &httpsig.Error{Reason: httpsig.ReasonReplayed, Err: errors.New("the nonce was already used within the window")}
	}
	if len(c.seen) >= c.max {
		return &httpsig.Error{Reason: httpsig.ReasonNonceCapacity, Err: fmt.Errorf("the replay cache holds %d nonces still inside the window", len(c.seen))}
	}
	if peer != "" && c.held[ph] >= c.perPeer {
		return &httpsig.Error{Reason: httpsig.ReasonNonceCapacity, Err: fmt.Errorf("this peer holds %d nonces still inside the window, its share of the replay cache", c.held[ph])}
	}
	exp := now.Add(life).UnixNano()
	c.seen[key] = exp
	c.fifo = append(c.fifo, nonceEntry{key, exp, ph})
	c.held[ph]++
	return nil
}

// peerHash is FNV-1a of the peer's ID: two peers sharing a hash share a
// share, nothing more.
func peerHash(peer string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(peer); i++ {
		h ^= uint64(peer[i])
		h *= 1099511628211
	}
	return h
}
