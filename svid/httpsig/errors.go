package httpsig

import (
	"errors"
	"fmt"
)

// Reasons a signature is refused: Error.Reason. Each is a stable code that
// the verifier reports and audits.
const (
	// ReasonMissing: the request carries no Signature / Signature-Input
	// (or none labelled for agentid).
	ReasonMissing = "signature_missing"
	// ReasonMalformed: Signature or Signature-Input cannot be parsed, a
	// parameter has the wrong type, or the certificate header is garbled.
	ReasonMalformed = "signature_malformed"
	// ReasonComponents: a required component or parameter is not covered.
	ReasonComponents = "signature_components"
	// ReasonAlgorithm: the alg parameter is unknown, not allowed, or not
	// the algorithm of the signing certificate's key.
	ReasonAlgorithm = "signature_algorithm"
	// ReasonDigest: the Content-Digest does not match the body as received.
	ReasonDigest = "signature_digest_mismatch"
	// ReasonInvalid: the signature does not verify with the certificate's key.
	ReasonInvalid = "signature_invalid"
	// ReasonStale: created is outside the window, or expires has passed.
	ReasonStale = "signature_stale"
	// ReasonReplayed: the nonce was seen within the window.
	ReasonReplayed = "signature_replayed"
	// ReasonCertMismatch: the signing certificate is not the one the peer
	// authenticated with (or names another SPIFFE ID, or keyid names
	// another certificate).
	ReasonCertMismatch = "signature_cert_mismatch"
	// ReasonUntrusted: the signing certificate does not chain to the bundle.
	ReasonUntrusted = "signature_untrusted"
	// ReasonUnverifiable: the front-end cannot see what the signature
	// covers (a gRPC call, an ext_authz request without its body).
	ReasonUnverifiable = "signature_unverifiable"
	// ReasonNonceCapacity: the replay cache is full of nonces still inside
	// the window; the request is refused rather than risk a replay.
	ReasonNonceCapacity = "signature_nonce_capacity"
)

// Error is a refused signature: Reason is one of the Reason* codes.
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func fail(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is the Reason of err's *Error, or "" when err is not one.
func ReasonOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
