package verifier

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

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
	FrontendAuthZEN  = "authzen"
	FrontendMCP      = "mcp" // verifier/mcpauth: an MCP server's own middleware
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
	// GRPC marks an HTTP request that is a gRPC call (a POST with a gRPC
	// content type, not to an MCP path): it is decided as {grpc, path},
	// the path a canonical /package.Service/Method, as the interceptors
	// decide the same call. Decide also finds it from an http POST's
	// Content-Type in Request (the check API's), and refuses a request
	// whose Content-Type names a gRPC type beside another (two lines, or
	// a comma) as bad_request.
	GRPC bool
	// Form marks a POST whose body a framework may read as form fields
	// (application/x-www-form-urlencoded, multipart/*, or no Content-Type:
	// see formmethod.go): Body holds it, and a "_method" field in it —
	// which Rails and Laravel run as the method it names — is refused, as
	// is a body over MaxFormBody or one that cannot be read as its
	// Content-Type (in Request) says.
	Form bool
	// Request is the context conditions may read (headers, source).
	Request Request
	// Invalid, when set, refuses the request before anything else is read
	// (e.g. headers over their limit).
	Invalid *InputError
	// Caller is the SPIFFE ID of the authenticated client that asked on
	// the peer's behalf (Envoy, a service using the check API), if any.
	Caller string

	// Subject, when its Type is set, is a subject that the caller asserts
	// (an AuthZEN subject other than an agent task): nothing is
	// authenticated, Credential must be empty, and the policy sees the
	// subject as subject — never as a peer. The types of authenticated
	// peers (agent_task, workload) cannot be asserted.
	Subject policies.Entity
	// SubjectID, when set, is the id an AuthZEN agent_task subject gave:
	// the credential must then be a task SVID with exactly this SPIFFE ID.
	SubjectID string
	// Resource, ActionProperties and Context are the rest of an AuthZEN
	// request, for the policy's resource blocks and conditions.
	Resource         policies.Entity
	ActionProperties json.RawMessage
	Context          json.RawMessage

	// Audience, when set, is the audience this front-end serves (an MCP
	// server's resource URI, RFC 8707): a JWT-SVID must name it, whatever
	// else the Authenticator accepts (wrong_audience otherwise), so that a
	// token minted for one server is refused by another behind the same
	// Authenticator. X.509-SVIDs have no audience and are not affected.
	Audience string
	// Reject, when set, refuses the query as bad_request after the peer is
	// authenticated (so that the audit record names it): a front-end's own
	// check of the action, e.g. an MCP tool the server does not have.
	Reject *InputError
	// WantScopes asks, for a policy denial, which scopes would have let the
	// peer through (Result.MissingScopes), when the policy can say it.
	WantScopes bool
	// Signed is the request as received, for the signature stage
	// (Verifier.Signatures); nil when the front-end cannot pass it (gRPC,
	// the check API).
	Signed *SignedRequest
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
	// ReasonSubjectMismatch: an AuthZEN agent_task subject whose id is not
	// the SPIFFE ID of its credential, or whose credential is not a task's.
	ReasonSubjectMismatch = "subject_mismatch"
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
	// MissingScopes, for a policy denial of a Query with WantScopes, are
	// scopes that would have made the policy allow it (nil when none would).
	MissingScopes []string
	// sig is the agent's signature as audited; signed: it was verified.
	sig    *audit.AgentSignature
	signed bool
	// refusedPeer is the peer whose verified credential a later stage
	// refused (revoked, wrong audience, another subject): recorded in the
	// audit log as who was refused, never handed out as authenticated.
	refusedPeer *Peer
}

// Signed reports whether the request carried a verified agent signature.
func (r *Result) Signed() bool { return r.signed }

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
	case BadRequest:
		if r.input == whatContentType || r.input == whatContentEncoding {
			return http.StatusUnsupportedMediaType // contenttype.go
		}
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
	switch {
	case q.Subject.Type != "":
		// A subject the caller asserts: no credential is read and no peer
		// authenticated; the rest of the pipeline is the same.
		if q.Subject.Type == policies.SubjectAgentTask || q.Subject.Type == policies.SubjectWorkload || q.Credential.Kind != CredentialNone {
			refuseInput(r, q, badInput("subject", "the subject type %q is reserved for authenticated peers: an asserted subject carries no credential and cannot take it", q.Subject.Type))
			v.finish(q, r)
			return
		}
	case v.authenticate(q, now, r):
		r.Authenticated = true
		if !v.checkSignature(q, now, r) {
			v.finish(q, r)
			return
		}
	default:
		v.finish(q, r)
		return
	}
	a, mcpID, err := canonicalAction(q)
	if err == nil {
		err = checkResourceAction(&a) // mcpuri.go
	}
	r.MCPID = mcpID
	if err == nil && q.Reject != nil {
		err = q.Reject
	}
	if err != nil {
		refuseInput(r, q, err)
		v.finish(q, r)
		return
	}
	r.Action = a
	v.ask(q, r, in, now)
	v.conclude(q, r)
}

// checkSubject holds an AuthZEN agent_task subject to its credential.
func checkSubject(p *Peer, id string) error {
	if !p.IsTask() {
		return &DenyError{Reason: ReasonSubjectMismatch, Err: fmt.Errorf("subject type agent_task: the credential of %s carries no task claims", p.id)}
	}
	if p.id.String() != id {
		return &DenyError{Reason: ReasonSubjectMismatch, Err: fmt.Errorf("subject.id %q is not the SPIFFE ID of its credential (%s)", boundedString(id), p.id)}
	}
	return nil
}

func boundedString(s string) string {
	if len(s) > 512 {
		return s[:512] + "…"
	}
	return s
}

// ask puts the policy's decision on r's action into r.Decision (and, for a
// denial when q.WantScopes, the scopes that would have allowed it). The
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
	*in = policies.Input{Action: r.Action, Request: q.Request, Now: now,
		Resource: q.Resource, ActionProperties: q.ActionProperties, Context: q.Context}
	if q.Subject.Type != "" {
		in.Subject = q.Subject
	} else {
		in.Peer = r.Peer.policyPeer()
	}
	r.Decision = Decision{Decision: v.Policy.Decide(in)}
	if !r.Decision.Allow && q.WantScopes && r.Decision.Limit == nil {
		if sc, ok := v.Policy.(scoper); ok {
			r.MissingScopes = sc.MissingScopes(in)
		}
	}
	*in = policies.Input{}
	if dg, ok := v.Policy.(digester); ok {
		r.Decision.PolicyDigest = dg.Digest()
	}
}

// conclude turns the policy's decision into the outcome and records it.
func (v *Verifier) conclude(q *Query, r *Result) {
	requireSigned(r)
	if r.Outcome == Unauthenticated {
		v.finish(q, r)
		return
	}
	if r.Decision.Allow {
		r.Outcome = Allowed
	} else {
		r.Outcome, r.Code = Forbidden, ReasonForbidden
	}
	v.finish(q, r)
}

// authenticate is the pipeline's first stages — credential, AuthZEN
// subject id, audience, liveness — into r.Peer. On failure r is the
// refusal (not yet recorded).
func (v *Verifier) authenticate(q *Query, now time.Time, r *Result) bool {
	err := v.Auth.authenticateInto(&q.Credential, &r.Peer)
	verified := err == nil
	p := &r.Peer
	if err == nil && q.SubjectID != "" {
		err = checkSubject(p, q.SubjectID)
	}
	if err == nil && p.kind == "jwt" {
		if q.Audience == "" {
			err = v.Auth.generalAudience(p)
		} else if !p.HasAudience(q.Audience) {
			err = deny(ReasonWrongAudience, fmt.Errorf("JWT-SVID audience %q does not name this resource %q", p.audience, q.Audience))
		}
	}
	if err == nil && v.Liveness != nil {
		lp := *p // escapes to the hook: only allocated with one
		if err = v.Liveness(&lp, now); err != nil {
			if de := (*DenyError)(nil); !errors.As(err, &de) {
				err = deny(ReasonLivenessUnknown, err) // the hook could not tell
			}
		}
	}
	if err != nil {
		var refused *Peer
		if verified {
			refused = new(Peer)
			*refused = *p
		}
		*r = Result{Outcome: Unauthenticated, Code: reasonOf(err, ReasonNoCredential), Action: boundedAction(q.Action), refusedPeer: refused}
		r.Decision.Reason = err.Error()
		return false
	}
	return true
}

// Authenticate runs the pipeline's authentication stages for q
// (credential, audience, trust domains, claims, liveness) without asking
// the policy: for a front-end that admits a connection or a session and
// decides its requests one by one (verifier/mcpauth's token verifier). A
// refusal is recorded and observed like every decision; an authenticated
// peer is not (its requests' decisions are).
func (v *Verifier) Authenticate(ctx context.Context, q *Query) Result {
	start := time.Now()
	now := v.now()
	var r Result
	if v.authenticate(q, now, &r) {
		return Result{Outcome: Allowed, Peer: r.Peer, Authenticated: true, Action: q.Action}
	}
	v.finish(q, &r)
	if v.Observe != nil {
		v.Observe(q.Frontend, r, time.Since(start))
	}
	return r
}

// pending is the working state of one decision, pooled: the query, the
// result and the policy's input stay off the request goroutine's stack
// (gRPC runs each call on a new goroutine, whose stack would otherwise
// grow, by copying, on every call) and off the heap. Nothing of a
// request stays in the pool: release clears it.
type pending struct {
	q   Query
	r   Result
	in  policies.Input
	ext checkInput // ExtAuthz's request
}

var pendingPool = sync.Pool{New: func() any { return new(pending) }}

func getPending() *pending { return pendingPool.Get().(*pending) }

// decide runs the pipeline on p.q into p.r.
func (p *pending) decide(v *Verifier) { v.decideInto(&p.q, &p.r, &p.in) }

func (p *pending) release() {
	*p = pending{}
	pendingPool.Put(p)
}

// Visible authenticates q's credential like Authenticate, then asks the
// policy, for each action, whether it could be allowed with some
// arguments (policies.Input.AnyArguments): the tools, prompts and
// resources an MCP client may be shown. The answers are not audited —
// they grant nothing; each call is decided on its own. visible is nil when
// the peer is refused (r says why).
func (v *Verifier) Visible(ctx context.Context, q *Query, actions []Action) (visible []bool, r Result) {
	r = v.Authenticate(ctx, q)
	if !r.Authenticated {
		return nil, r
	}
	in := policies.Input{Peer: r.Peer.policyPeer(), Request: q.Request, Now: v.now(), AnyArguments: true}
	visible = make([]bool, len(actions))
	for i := range actions {
		in.Action = actions[i]
		visible[i] = checkResourceAction(&in.Action) == nil && v.Policy.Decide(&in).Allow
	}
	return visible, r
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
	r.Decision.Reason = r.Code + ": " + cutReason(err.Error())
}

// maxReasonLen bounds the text of a refused input's reason: the errors
// quote what they refuse in bounded form, and this cap holds for any
// that would not.
const maxReasonLen = 1024

func cutReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	i := maxReasonLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("…(%d bytes)", len(s))
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
	return Action{Kind: cut512(a.Kind), Method: cut512(a.Method), Path: cut512(a.Path), Name: cut512(a.Name)}
}

func cut512(s string) string {
	const max = 512
	if len(s) > max {
		return s[:max] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
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
		AgentSig:     r.sig,
	}
	if q.Subject.Type != "" {
		rec.Subject = &audit.Entity{Type: cut512(q.Subject.Type), ID: cut512(q.Subject.ID)}
	}
	if q.Resource.Type != "" || q.Resource.ID != "" {
		rec.Resource = &audit.Entity{Type: cut512(q.Resource.Type), ID: cut512(q.Resource.ID)}
	}
	if p := r.refusedPeer; p != nil || r.Authenticated {
		if p == nil {
			p = &r.Peer
		}
		if p.rec != nil {
			rec.SetPeer(p.rec)
		} else {
			rec.Peer, rec.Serial, rec.JWTID = p.id.String(), p.serial, p.jwtID
			rec.Claims = p.claimsJSON
		}
	}
	if v.Receipts && r.Outcome == Allowed {
		ref, err := v.Audit.AppendWait(rec)
		r.Decision.Receipt = ref
		return err
	}
	return v.Audit.Append(rec)
}
