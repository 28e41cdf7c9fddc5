package audit

import (
	"fmt"
	"strconv"
	"strings"
)

// Ref names one record of one log: the log's origin (its checkpoint origin,
// "agentid-audit/<hex>") and the record's leaf index (seq - 1). It is what
// a verifier hands out for an allowed decision (the x-agentid-receipt
// header) once the record is durable; `agentid audit prove --ref` turns it
// into a receipt file that `agentid audit verify-receipt` checks offline.
type Ref struct {
	Origin string
	Index  uint64
}

// IsZero reports whether r names nothing.
func (r Ref) IsZero() bool { return r.Origin == "" }

// String renders r as "<origin>;index=<N>" ("" for the zero Ref).
func (r Ref) String() string {
	if r.IsZero() {
		return ""
	}
	return r.Origin + ";index=" + strconv.FormatUint(r.Index, 10)
}

// ParseRef reads a Ref rendered by String.
func ParseRef(s string) (Ref, error) {
	origin, idx, ok := strings.Cut(strings.TrimSpace(s), ";index=")
	if !ok || !strings.HasPrefix(origin, "agentid-audit/") || len(origin) == len("agentid-audit/") {
		return Ref{}, fmt.Errorf("audit: receipt reference %q: want \"agentid-audit/<hex>;index=<N>\"", s)
	}
	n, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return Ref{}, fmt.Errorf("audit: receipt reference %q: index: %w", s, err)
	}
	return Ref{Origin: origin, Index: n}, nil
}
