package verifier

import (
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
)

// Action, Request and Input are the policy engine's: the verifier asks
// policies the same questions the CLI's "agentid policy eval" does.
type (
	Action  = policies.Action
	Request = policies.Request
)

// Decision is the policy's answer plus the digest of the policy set that
// gave it (for the audit log) and, for an allowed decision when the
// Verifier hands out receipts, the reference of its durable audit record.
type Decision struct {
	policies.Decision
	PolicyDigest string
	Receipt      audit.Ref
}

// Explanation is the reason followed by the deciding rules, as denials
// show it: "opening a ticket needs tickets:write (rule t (a.hcl:3))".
func (d Decision) Explanation() string {
	if len(d.Rules) == 0 {
		return d.Reason
	}
	return d.Reason + " (rule " + strings.Join(d.RuleStrings(), ", ") + ")"
}

// Policy decides. *policies.Set and *policies.Store (through StorePolicy)
// implement it; implementations must be safe for concurrent use.
type Policy interface {
	Decide(in *policies.Input) policies.Decision
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(in *policies.Input) policies.Decision

// Decide calls f.
func (f PolicyFunc) Decide(in *policies.Input) policies.Decision { return f(in) }

// digester is implemented by policies that can name their version.
type digester interface{ Digest() string }

// scoper is implemented by policies that can say which scopes would
// allow a denied input (*policies.Set, StorePolicy).
type scoper interface {
	MissingScopes(in *policies.Input) []string
}

// MissingScopes asks the current Set (see policies.Set.MissingScopes).
func (p StorePolicy) MissingScopes(in *policies.Input) []string {
	return p.Store.Set().MissingScopes(in)
}

// StorePolicy decides with the current Set of a Store, so that a reload
// takes effect on the next request; with no Set loaded it denies.
type StorePolicy struct{ Store *policies.Store }

// Decide implements Policy.
func (p StorePolicy) Decide(in *policies.Input) policies.Decision {
	set := p.Store.Set()
	if set == nil {
		return policies.Decision{Reason: "no policy loaded"}
	}
	return set.Decide(in)
}

// Digest is the current Set's digest.
func (p StorePolicy) Digest() string {
	if set := p.Store.Set(); set != nil {
		return set.Digest()
	}
	return ""
}

// Verifier is the decision pipeline: an Authenticator, a Policy and an
// optional audit log, with hooks for task liveness and metrics. Every
// front-end (Middleware, the gRPC interceptors, ExtAuthz, Proxy, the
// daemon's check API) adapts its protocol to a Query and renders the
// Result of Decide; none decides on its own.
type Verifier struct {
	Auth   *Authenticator
	Policy Policy
	// Audit, when set, receives one record per decision.
	Audit *audit.Writer
	// AuditFailOpen gives decisions that could not be recorded (the log
	// cannot take records: disk full, I/O error) instead of refusing them
	// with Unavailable. Default false: a decision that cannot be recorded
	// is not given (audit { on_failure = "deny" }).
	AuditFailOpen bool
	// Receipts makes every allowed decision wait until its audit record is
	// durable (Audit.AppendWait: callers share one fsync per batch) and
	// carry its reference (Decision.Receipt): the proxy and ext_authz send
	// it upstream as x-agentid-receipt, the middleware and the gRPC
	// interceptors put it in the context (ReceiptFromContext). An allowed
	// decision whose record cannot be written is refused (Unavailable)
	// unless AuditFailOpen. Denials are recorded without waiting.
	Receipts bool
	// Headers selects the identity headers the proxy and the ext_authz
	// server send upstream (zero: DefaultHeaders, every one but
	// x-agentid-claims). Incoming x-agentid-* headers are removed whether
	// or not they are selected.
	Headers HeaderSet
	// Liveness, when set, is asked after authentication whether the peer
	// (and its delegation chain) is still live; a non-nil error (a
	// *DenyError, e.g. reason "revoked") refuses the request as
	// unauthenticated.
	Liveness func(p *Peer, now time.Time) error
	// Observe, when set, is called once per decision with the front-end's
	// name, the result and the time the pipeline took (metrics).
	Observe func(frontend string, r Result, elapsed time.Duration)
	// Signatures, when set, verifies agent-signed requests (RFC 9421);
	// see Signatures.
	Signatures *Signatures
	// MaxFormBody bounds the body of a form or JSON POST that the proxy,
	// the middleware and ext_authz read to refuse a "_method" field in it
	// (Query.Form): a larger one is refused with 413 (0: MaxFormBody,
	// 1 MiB, as nginx's client_max_body_size).
	MaxFormBody int
	// Clock (default time.Now).
	Clock func() time.Time
}

func (v *Verifier) maxFormBody() int {
	if v.MaxFormBody > 0 {
		return v.MaxFormBody
	}
	return MaxFormBody
}

func decisionWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}
