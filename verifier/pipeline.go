package verifier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
)

// CredentialKind says what kind of credential a front-end received. The
// kind travels with the credential through the pipeline and into the
// Authenticator's cache key.
type CredentialKind uint8

const (
	// CredentialNone: the request carried no credential.
	CredentialNone CredentialKind = iota
	// CredentialX509 is a certificate chain (leaf first) that the
	// Authenticator verifies against the bundles.
	CredentialX509
	// CredentialX509Verified is a chain the TLS handshake verified against
	// the same bundles (go-spiffe tlsconfig); only the leaf is read.
	CredentialX509Verified
	// CredentialPEM is a PEM chain as text, optionally URL-encoded (Envoy's
	// source.certificate, the check API).
	CredentialPEM
	// CredentialJWT is a JWT-SVID, from a bearer header or the check API.
	CredentialJWT
	// CredentialMalformed is a credential the front-end could not even
	// read (an oversized bearer, a non-Bearer Authorization scheme):
	// refused as bad_credential with Value as the detail.
	CredentialMalformed
)

// Credential is what a front-end received from the peer.
type Credential struct {
	Kind CredentialKind
	// Chain for CredentialX509 and CredentialX509Verified.
	Chain []*x509.Certificate
	// Value for CredentialPEM and CredentialJWT (and the reason for
	// CredentialMalformed).
	Value string
}

// Front-end names, as they appear in metrics and audit records.
const (
	FrontendHTTP     = "http"
	FrontendGRPC     = "grpc"
	FrontendExtAuthz = "ext_authz"
	FrontendProxy    = "proxy"
	FrontendCheckAPI = "check_api"
)

// Query is one question from a front-end: who (the credential), what (the
// action as the front-end saw it, not yet canonical) and the context.
type Query struct {
	Frontend   string
	Credential Credential
	// Action as received; Decide canonicalises it (HTTP method and path,
	// gRPC method, limits) and refuses what cannot be made canonical.
	Action Action
	// MCP marks a request to an MCP endpoint: Body must then hold exactly
	// one JSON-RPC message, which becomes the action (see ParseMCP), and
	// the Mcp-Method / Mcp-Name headers in Request must agree with it.
	MCP  bool
	Body []byte
	// Request is the context conditions may read (headers, source).
	Request Request
	// Invalid, when set, refuses the request before anything else is read
	// (e.g. headers over their limit).
	Invalid *InputError
	// Caller is the SPIFFE ID of the authenticated client that asked on
	// the peer's behalf (Envoy, a service using the check API), if any.
	Caller string
}

// Outcome classifies a Result for the front-ends.
type Outcome uint8

const (
	// Allowed: the policy allowed the action and the decision was recorded.
	Allowed Outcome = iota
	// Unauthenticated: the credential was missing, malformed, untrusted,
	// expired or foreign, or the task is not live.
	Unauthenticated
	// Forbidden: the policy denied the action.
	Forbidden
	// BadRequest: the action cannot be decided as sent (a non-canonical
	// path, a lower-case method, a malformed MCP message).
	BadRequest
	// TooLarge: an input exceeds its documented limit.
	TooLarge
	// Unavailable: the decision could not be recorded (audit on_failure =
	// "deny"), so it was not given.
	Unavailable
)

// Result reason codes beyond the DenyError ones.
const (
	ReasonForbidden        = "forbidden"
	ReasonBadRequest       = "bad_request"
	ReasonTooLarge         = "too_large"
	ReasonAuditUnavailable = "audit_unavailable"
)

// Result is the pipeline's answer.
type Result struct {
	Outcome Outcome
	// Code is a short stable reason for metrics and headers: "" when
	// allowed, a DenyError reason, or one of the Reason* codes above.
	Code string
	// Peer is the authenticated peer (zero unless Authenticated).
	Peer          Peer
	Authenticated bool
	// Action is the canonical action that was decided.
	Action Action
	// Decision is the policy's (or the refusal's) decision.
	Decision Decision
	// input names what was refused as BadRequest or TooLarge.
	input string
	// MCPID is the JSON-RPC id of an MCP request ("" for none), so a
	// refusal can answer it as JSON-RPC.
	MCPID []byte
}

// Allowed reports whether the request may proceed.
func (r *Result) Allowed() bool { return r.Outcome == Allowed }

// Message is what a refusal tells the caller: the reason code and detail,
// or for a policy denial the reason and the deciding rules.
func (r *Result) Message() string {
	if r.Outcome == Forbidden {
		return r.Decision.Explanation()
	}
	return r.Decision.Reason
}

// HTTPStatus is the status a front-end answers a refusal with.
func (r *Result) HTTPStatus() int {
	switch r.Outcome {
	case Allowed:
		return http.StatusOK
	case Unauthenticated:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	case TooLarge:
		switch r.input {
		case "path":
			return http.StatusRequestURITooLong
		case "request headers":
			return http.StatusRequestHeaderFieldsTooLarge
		}
		return http.StatusRequestEntityTooLarge
	case Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// Decide runs the pipeline for one query, and every front-end calls it:
// credential → authenticated peer (chain or signature, claims, lineage,
// trust domains) → task liveness → canonical action → policy → audit
// record → metrics. No stage can be skipped by a front-end: a request is
// allowed only when every stage passed and the decision was recorded (or
// the operator chose AuditFailOpen).
func (v *Verifier) Decide(ctx context.Context, q *Query) Result {
	var r Result
	v.decideInto(q, &r, nil)
	return r
}

// decideInto is Decide writing the result into r, which must be zero. A
// front-end that keeps r (and in, the policy's input, used only with the
// policies of this module, which do not keep it) off its stack answers
// without copying them or growing its goroutine's stack; in may be nil.
func (v *Verifier) decideInto(q *Query, r *Result, in *policies.Input) {
	if v.Observe == nil {
		v.decide(q, v.now(), r, in)
		return
	}
	v.decideObserved(q, r, in)
}

// decideObserved is decideInto with the Observe hook (a frame of its own:
// the hook's copy of the Result is not on the stack without one).
func (v *Verifier) decideObserved(q *Query, r *Result, in *policies.Input) {
	start := time.Now()
	now := start
	if v.Clock != nil {
		now = v.Clock()
	}
	v.decide(q, now, r, in)
	v.Observe(q.Frontend, *r, time.Since(start))
}

func (v *Verifier) decide(q *Query, now time.Time, r *Result, in *policies.Input) {
	if q.Invalid != nil {
		refuseInput(r, q, q.Invalid)
		v.finish(q, r)
		return
	}
	err := v.Auth.authenticateInto(&q.Credential, &r.Peer)
	if err == nil && v.Liveness != nil {
		lp := r.Peer // escapes to the hook: only allocated with one
		err = v.Liveness(&lp, now)
	}
	if err != nil {
		v.refuseAuth(q, r, err)
		return
	}
	r.Authenticated = true
	a, mcpID, err := canonicalAction(q)
	r.MCPID = mcpID
	if err != nil {
		refuseInput(r, q, err)
		v.finish(q, r)
		return
	}
	r.Action = a
	v.ask(q, r, in, now)
	if r.Decision.Allow {
		r.Outcome = Allowed
	} else {
		r.Outcome, r.Code = Forbidden, ReasonForbidden
	}
	v.finish(q, r)
}

// refuseAuth makes r the refusal of a peer that did not authenticate (or
// is not live).
func (v *Verifier) refuseAuth(q *Query, r *Result, err error) {
	*r = Result{Outcome: Unauthenticated, Code: reasonOf(err, ReasonNoCredential), Action: boundedAction(q.Action)}
	r.Decision.Reason = err.Error()
	v.finish(q, r)
}

// ask puts the policy's decision on r's action into r.Decision. The
// policies of this module do not keep their input, so a caller's in is
// used for them; any other Policy gets an input of its own.
func (v *Verifier) ask(q *Query, r *Result, in *policies.Input, now time.Time) {
	switch v.Policy.(type) {
	case *policies.Set, StorePolicy, *StorePolicy:
	default:
		in = nil
	}
	if in == nil {
		in = new(policies.Input)
	}
	*in = policies.Input{Peer: r.Peer.policyPeer(), Action: r.Action, Request: q.Request, Now: now}
	r.Decision = Decision{Decision: v.Policy.Decide(in)}
	*in = policies.Input{}
	if dg, ok := v.Policy.(digester); ok {
		r.Decision.PolicyDigest = dg.Digest()
	}
}

// pending is the working state of one decision, pooled: the query, the
// result and the policy's input stay off the request goroutine's stack
// (gRPC runs each call on a new goroutine, whose stack would otherwise
// grow, by copying, on every call) and off the heap. Nothing of a
// request stays in the pool: release clears it.
type pending struct {
	q  Query
	r  Result
	in policies.Input
}

var pendingPool = sync.Pool{New: func() any { return new(pending) }}

func getPending() *pending { return pendingPool.Get().(*pending) }

// decide runs the pipeline on p.q into p.r.
func (p *pending) decide(v *Verifier) { v.decideInto(&p.q, &p.r, &p.in) }

func (p *pending) release() {
	*p = pending{}
	pendingPool.Put(p)
}

// refuseInput makes r a refusal of an input that cannot be decided.
func refuseInput(r *Result, q *Query, err error) {
	var ie *InputError
	errors.As(err, &ie)
	r.Outcome, r.Code, r.Action = BadRequest, ReasonBadRequest, boundedAction(q.Action)
	if ie != nil {
		r.input = ie.What
		if ie.TooLarge {
			r.Outcome, r.Code = TooLarge, ReasonTooLarge
		}
	}
	r.Decision.Reason = r.Code + ": " + err.Error()
}

// finish records the decision; an allow that cannot be recorded is not
// given unless the operator chose AuditFailOpen.
func (v *Verifier) finish(q *Query, r *Result) {
	err := v.record(q, r)
	if err == nil || v.AuditFailOpen {
		return
	}
	if r.Outcome == Allowed {
		r.Outcome, r.Code = Unavailable, ReasonAuditUnavailable
		r.Decision.Allow = false
		r.Decision.Reason = ReasonAuditUnavailable + ": the decision log cannot take records: " + err.Error()
	}
}

func (v *Verifier) now() time.Time {
	if v.Clock != nil {
		return v.Clock()
	}
	return time.Now()
}

func reasonOf(err error, def string) string {
	var de *DenyError
	if errors.As(err, &de) {
		return de.Reason
	}
	return def
}

// boundedAction is an action that could not be made canonical, cut to a
// size fit for the audit log.
func boundedAction(a Action) Action {
	const max = 512
	cut := func(s string) string {
		if len(s) > max {
			return s[:max] + fmt.Sprintf("…(%d bytes)", len(s))
		}
		return s
	}
	return Action{Kind: cut(a.Kind), Method: cut(a.Method), Path: cut(a.Path), Name: cut(a.Name)}
}

func (v *Verifier) record(q *Query, r *Result) error {
	if v.Audit == nil {
		return nil
	}
	d := &r.Decision
	rec := audit.Record{
		Type:         audit.TypeDecision,
		Action:       &audit.Action{Kind: r.Action.Kind, Method: r.Action.Method, Path: r.Action.Path, Name: r.Action.Name},
		Decision:     decisionWord(r.Outcome == Allowed),
		Rules:        d.RuleStrings(),
		Reason:       d.Reason,
		PolicyDigest: d.PolicyDigest,
		Frontend:     q.Frontend,
		Caller:       q.Caller,
	}
	if r.Authenticated {
		p := &r.Peer
		rec.Peer, rec.Serial, rec.JWTID = p.id.String(), p.serial, p.jwtID
		rec.Claims = p.claimsJSON
	}
	return v.Audit.Append(rec)
}
