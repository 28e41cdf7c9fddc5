package svid

import "fmt"

// Reason says why claims were rejected. Callers branch on it (deny with a
// reason, count by reason); the Detail of the error says more for humans.
type Reason int

const (
	// ReasonMalformed: the encoding is broken: not JSON, truncated or
	// trailing bytes, invalid UTF-8, duplicate or unknown keys, wrong types,
	// an extension that is not a DER UTF8String.
	ReasonMalformed Reason = iota + 1
	// ReasonUnsupportedVersion: "v" is missing or not a major version this
	// package understands.
	ReasonUnsupportedVersion
	// ReasonTooLarge: the JSON, the scope list or the chain exceeds its
	// limit (MaxJSONSize, MaxScopes, MaxChain).
	ReasonTooLarge
	// ReasonInvalidField: a field is missing or breaks its charset or length.
	ReasonInvalidField
	// ReasonCriticalExtension: the X.509 extension is marked critical.
	ReasonCriticalExtension
	// ReasonNotTaskID: the SVID's SPIFFE ID is not a task ID
	// (/agent/<agent>/task/<task>) although it carries task claims.
	ReasonNotTaskID
	// ReasonIDMismatch: the claims' agent or task disagree with the SPIFFE
	// ID path.
	ReasonIDMismatch
	// ReasonBadChainEntry: a chain entry is not a task SPIFFE ID.
	ReasonBadChainEntry
	// ReasonChainCycle: the chain repeats an entry or contains the SVID's
	// own SPIFFE ID.
	ReasonChainCycle
	// ReasonForeignTrustDomain: the SVID or a chain member is outside the
	// allowed trust domains.
	ReasonForeignTrustDomain
	// ReasonExpired: the deadline has passed.
	ReasonExpired
	// ReasonActMismatch: the JWT "act" claim disagrees with the chain.
	ReasonActMismatch
)

var reasonNames = [...]string{
	ReasonMalformed:          "malformed",
	ReasonUnsupportedVersion: "unsupported version",
	ReasonTooLarge:           "too large",
	ReasonInvalidField:       "invalid field",
	ReasonCriticalExtension:  "critical extension",
	ReasonNotTaskID:          "not a task SPIFFE ID",
	ReasonIDMismatch:         "SPIFFE ID mismatch",
	ReasonBadChainEntry:      "bad chain entry",
	ReasonChainCycle:         "chain cycle",
	ReasonForeignTrustDomain: "foreign trust domain",
	ReasonExpired:            "expired",
	ReasonActMismatch:        "act mismatch",
}

// String returns a short lower-case name, stable for logs and metrics.
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// ValidationError is returned when claims cannot be decoded or fail
// validation, in the style of x509.CertificateInvalidError.
type ValidationError struct {
	Reason Reason
	Detail string
}

func (e *ValidationError) Error() string {
	if e.Detail == "" {
		return "svid: claims rejected: " + e.Reason.String()
	}
	return "svid: claims rejected: " + e.Reason.String() + ": " + e.Detail
}

// Is makes errors.Is(err, &ValidationError{Reason: r}) match on the reason.
func (e *ValidationError) Is(target error) bool {
	t, ok := target.(*ValidationError)
	return ok && t.Reason == e.Reason && (t.Detail == "" || t.Detail == e.Detail)
}

func fail(r Reason, format string, args ...any) *ValidationError {
	return &ValidationError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}
