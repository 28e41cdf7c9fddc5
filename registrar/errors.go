package registrar

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
)

// Reason says why the registrar refused a request. Callers branch on it
// (map it to a gRPC code with [Reason.Code], count refusals by reason); the
// Detail of the [Error] says more for humans.
type Reason int

const (
	// ReasonInvalidRequest: a field of the request is missing or malformed
	// (agent or task name, model, prompt digest, scope token, principal,
	// deadline and TTL both given, an extra selector of the agentid type…).
	ReasonInvalidRequest Reason = iota + 1
	// ReasonUnknownAgent: the issuance policy has no block for the agent
	// (and no "*" block), or for an agent of the parent's chain.
	ReasonUnknownAgent
	// ReasonModelNotAllowed: the model matches none of the agent's models.
	ReasonModelNotAllowed
	// ReasonPromptNotAllowed: the prompt digest matches none of the
	// agent's prompts.
	ReasonPromptNotAllowed
	// ReasonScopeNotAllowed: a scope matches none of the agent's scopes.
	ReasonScopeNotAllowed
	// ReasonPrincipalNotAllowed: the principal matches none of the agent's
	// principals.
	ReasonPrincipalNotAllowed
	// ReasonTTLExceeded: the deadline is further away than the agent's
	// max_ttl.
	ReasonTTLExceeded
	// ReasonTTLTooShort: the deadline is in the past or closer than the
	// registrar's minimum TTL.
	ReasonTTLTooShort
	// ReasonDelegatorNotAllowed: the child agent's delegators do not
	// include the parent task's agent.
	ReasonDelegatorNotAllowed
	// ReasonScopeEscalation: the child asks for a scope its parent does
	// not hold.
	ReasonScopeEscalation
	// ReasonDeadlineExtension: the child's deadline is after its parent's.
	ReasonDeadlineExtension
	// ReasonDepthExceeded: the child's depth exceeds the max_depth of an
	// agent of the chain, of the parent or of the child.
	ReasonDepthExceeded
	// ReasonAgentCycle: the child's agent already appears in the chain
	// (the parent included), or the child's task ID does.
	ReasonAgentCycle
	// ReasonPrincipalMismatch: a child request names a principal other
	// than its parent's (principals are inherited).
	ReasonPrincipalMismatch
	// ReasonParentNotFound: the parent task has no entry (never created,
	// revoked, or revoked while the child was being created).
	ReasonParentNotFound
	// ReasonParentInvalid: the parent's entry is not a valid task entry or
	// its deadline has passed.
	ReasonParentInvalid
	// ReasonConflict: a task with this SPIFFE ID already exists.
	ReasonConflict
	// ReasonNotFound: the task has no entry.
	ReasonNotFound
	// ReasonDelegationLimit: a member of the child's chain has
	// max_delegated live tasks below it already.
	ReasonDelegationLimit
	// ReasonRecentlyRevoked: the task ID was revoked through this
	// registrar less than its quiet period (recreate_quiet_period) ago;
	// SPIRE's caches may still serve or authorize the revoked
	// incarnation. The detail says when the ID may be created again; a
	// fresh task ID may be created at once.
	ReasonRecentlyRevoked
)

var reasonNames = [...]string{
	ReasonInvalidRequest:      "invalid_request",
	ReasonUnknownAgent:        "unknown_agent",
	ReasonModelNotAllowed:     "model_not_allowed",
	ReasonPromptNotAllowed:    "prompt_not_allowed",
	ReasonScopeNotAllowed:     "scope_not_allowed",
	ReasonPrincipalNotAllowed: "principal_not_allowed",
	ReasonTTLExceeded:         "ttl_exceeded",
	ReasonTTLTooShort:         "ttl_too_short",
	ReasonDelegatorNotAllowed: "delegator_not_allowed",
	ReasonScopeEscalation:     "scope_escalation",
	ReasonDeadlineExtension:   "deadline_extension",
	ReasonDepthExceeded:       "depth_exceeded",
	ReasonAgentCycle:          "agent_cycle",
	ReasonPrincipalMismatch:   "principal_mismatch",
	ReasonParentNotFound:      "parent_not_found",
	ReasonParentInvalid:       "parent_invalid",
	ReasonConflict:            "conflict",
	ReasonNotFound:            "not_found",
	ReasonDelegationLimit:     "delegation_limit",
	ReasonRecentlyRevoked:     "recently_revoked",
}

// String returns the reason's snake_case name, stable for logs, metrics and
// API responses.
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Code is the gRPC status code a task API answers with for the reason.
func (r Reason) Code() codes.Code {
	switch r {
	case ReasonInvalidRequest, ReasonTTLTooShort:
		return codes.InvalidArgument
	case ReasonConflict:
		return codes.AlreadyExists
	case ReasonNotFound, ReasonParentNotFound:
		return codes.NotFound
	case ReasonParentInvalid, ReasonRecentlyRevoked:
		return codes.FailedPrecondition
	case ReasonDelegationLimit:
		return codes.ResourceExhausted
	}
	return codes.PermissionDenied
}

// Error is a refused request, in the style of x509.CertificateInvalidError.
type Error struct {
	Reason Reason
	// Rule is the position of the issuance-policy block that decided,
	// "file:line", when a policy rule did.
	Rule string
	// Detail says what was wrong, for humans.
	Detail string
	// Err is the underlying error, if any (an svid.ValidationError, a gRPC
	// status).
	Err error
}

func (e *Error) Error() string {
	msg := "registrar: " + e.Reason.String()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Rule != "" {
		msg += " (rule " + e.Rule + ")"
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, &Error{Reason: r}) match on the reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason && (t.Detail == "" || t.Detail == e.Detail)
}

// ReasonOf returns the reason of a refusal in err's chain, or 0.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return 0
}

func refuse(r Reason, rule, format string, args ...any) *Error {
	return &Error{Reason: r, Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// wrapErr gives errors that are not refusals (transport, SPIRE) the
// package prefix.
func wrapErr(op string, err error) error {
	return fmt.Errorf("registrar: %s: %w", op, err)
}
