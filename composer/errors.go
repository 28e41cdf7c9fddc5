package composer

import (
	"errors"
	"fmt"
)

// Reason says why the composer refused to add claims to a task's SVID.
type Reason int

const (
	// ReasonNotTask: the SPIFFE ID is not a task ID; callers should leave
	// the SVID alone rather than treat this as a refusal.
	ReasonNotTask Reason = iota + 1
	// ReasonNoEntry: the server has no entry for the task's SPIFFE ID
	// (never created, or revoked).
	ReasonNoEntry
	// ReasonDuplicateEntry: the server has more than one entry for the
	// task's SPIFFE ID; a task has exactly one.
	ReasonDuplicateEntry
	// ReasonExpired: the entry's expires_at (the task deadline) has passed,
	// or the entry has none.
	ReasonExpired
	// ReasonInvalidEntry: the entry's selectors do not rebuild valid claims
	// for the SPIFFE ID (unknown or repeated selector, claims naming another
	// agent or task, a chain member outside the trust domains…).
	ReasonInvalidEntry
	// ReasonLookupFailed: the server's Entry API could not be read
	// (socket absent, timeout, error status).
	ReasonLookupFailed
)

var reasonNames = [...]string{
	ReasonNotTask:        "not_task",
	ReasonNoEntry:        "no_entry",
	ReasonDuplicateEntry: "duplicate_entry",
	ReasonExpired:        "expired",
	ReasonInvalidEntry:   "invalid_entry",
	ReasonLookupFailed:   "lookup_failed",
}

// String returns the reason's snake_case name, stable for logs and metrics.
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Error is a refusal to compose a task's SVID.
type Error struct {
	// ID is the SPIFFE ID being signed.
	ID string
	// Reason says why.
	Reason Reason
	// Detail says more, for humans.
	Detail string
	// Err is the underlying error (an *svid.ValidationError, a gRPC
	// status), if any.
	Err error
}

func (e *Error) Error() string {
	msg := "composer: " + e.ID + ": " + e.Reason.String()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Reason: r}) match on the reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason && (t.ID == "" || t.ID == e.ID)
}

// ReasonOf returns the reason of the *Error in err's chain, or 0.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return 0
}

func refuse(id string, r Reason, err error, format string, args ...any) *Error {
	return &Error{ID: id, Reason: r, Detail: fmt.Sprintf(format, args...), Err: err}
}
