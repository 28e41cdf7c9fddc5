package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/policies"
)

// AuthZEN limits. A request over one of them is refused with 400 and a
// message naming the limit, before anything is decided.
const (
	// MaxAuthZENBody bounds POST /access/v1/evaluation.
	MaxAuthZENBody = 1 << 20
	// MaxAuthZENBatchBody bounds POST /access/v1/evaluations.
	MaxAuthZENBatchBody = 8 << 20
	// DefaultAuthZENMaxBatch is the default bound on the evaluations of
	// one batch request.
	DefaultAuthZENMaxBatch = 1000
	// MaxAuthZENField bounds a subject's or resource's type and id.
	MaxAuthZENField = 2048
	// maxAuthZENDepth bounds the nesting of a request.
	maxAuthZENDepth = 64
)

// Subject properties that carry an agent_task subject's credential.
const (
	AuthZENPropJWT         = "jwt"
	AuthZENPropCertificate = "certificate"
)

// Evaluation semantics of a batch (options.evaluations_semantic).
const (
	SemanticExecuteAll          = "execute_all"
	SemanticDenyOnFirstDeny     = "deny_on_first_deny"
	SemanticPermitOnFirstPermit = "permit_on_first_permit"
)

// AuthZEN serves the OpenID AuthZEN Authorization API 1.0 (HTTPS JSON
// binding) over the pipeline: every evaluation is one Query to
// Verifier.Decide, audited and counted with the front-end "authzen".
//
// A subject of type agent_task is proven: its properties carry the
// JWT-SVID ("jwt") or the PEM X.509-SVID ("certificate") that the PEP
// received, which is authenticated exactly as the check API does, and its
// id must be that SVID's SPIFFE ID. Subjects of the types in SubjectTypes
// are the PEP's word, as AuthZEN defines: the policy sees them as subject,
// never as a peer. Other subject types are refused with 400.
type AuthZEN struct {
	V *Verifier
	// SubjectTypes are the subject types a PEP may assert, e.g. "user".
	SubjectTypes []string
	// MaxBatch bounds the evaluations of one batch (default
	// DefaultAuthZENMaxBatch).
	MaxBatch int
	// PDP is the policy_decision_point of the discovery document; by
	// default the scheme and host the request was sent to.
	PDP string
	// CertificatesFromAnyCaller accepts an agent_task subject's
	// "certificate" from callers that did not authenticate with a SPIFFE
	// client certificate. A certificate is public (every TLS handshake and
	// Agentid-Svid header shows it): it is the PEP's word that it
	// authenticated it, so by default it is accepted only over mTLS (the
	// check API's allowed_callers); the "jwt" is accepted from anyone.
	CertificatesFromAnyCaller bool
}

// errCertificateNeedsCaller refuses an agent_task certificate from an
// unauthenticated caller.
const errCertificateNeedsCaller = `an agent_task subject's "certificate" is public and proves nothing from a caller that did not authenticate: call over SPIFFE mTLS as a PEP in the check API's allowed_callers, or send the task's "jwt"`

// Handler serves POST /access/v1/evaluation, POST /access/v1/evaluations
// and GET /.well-known/authzen-configuration.
func (z *AuthZEN) Handler() http.Handler {
	mux := http.NewServeMux()
	z.Register(mux)
	return mux
}

// Register adds the AuthZEN routes to mux.
func (z *AuthZEN) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /access/v1/evaluation", func(w http.ResponseWriter, r *http.Request) { z.serve(w, r, false) })
	mux.HandleFunc("POST /access/v1/evaluations", func(w http.ResponseWriter, r *http.Request) { z.serve(w, r, true) })
	mux.HandleFunc("GET /.well-known/authzen-configuration", z.discovery)
}

func (z *AuthZEN) discovery(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	pdp := z.PDP
	if pdp == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		pdp = scheme + "://" + r.Host
	}
	pdp = strings.TrimSuffix(pdp, "/")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"policy_decision_point":       pdp,
		"access_evaluation_endpoint":  pdp + "/access/v1/evaluation",
		"access_evaluations_endpoint": pdp + "/access/v1/evaluations",
	})
}

func echoRequestID(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Request-ID"); id != "" {
		w.Header().Set("X-Request-ID", id)
	}
}

// AuthZENDecision is one decision of the API: a policy's allow or deny
// carries no context (its rules and reason are in the audit log); a
// request refused before the policy (a missing, forged, expired or
// foreign credential, an action that cannot be decided, a decision that
// cannot be recorded) carries {"code", "reason"}.
type AuthZENDecision struct {
	Decision bool                    `json:"decision"`
	Context  *AuthZENDecisionContext `json:"context,omitempty"`
}

// AuthZENDecisionContext says why a request was refused before the policy.
type AuthZENDecisionContext struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

type authzenBatchResponse struct {
	Evaluations []AuthZENDecision `json:"evaluations"`
}

// authzenError is a 400 answer, with a message for the PEP.
type authzenError struct{ msg string }

func (e *authzenError) Error() string { return e.msg }

func badAuthZEN(format string, args ...any) error {
	return &authzenError{fmt.Sprintf(format, args...)}
}

func (z *AuthZEN) serve(w http.ResponseWriter, r *http.Request, batch bool) {
	echoRequestID(w, r)
	qs, semantic, single, err := z.read(r, batch)
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "bad AuthZEN request: "+err.Error()+"\n")
		return
	}
	caller := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0]); err == nil {
			caller = id.String()
		}
	}
	out := make([]AuthZENDecision, 0, len(qs))
	for i := range qs {
		q := &qs[i]
		q.Caller = caller
		if q.Credential.Kind == CredentialPEM && caller == "" && !z.CertificatesFromAnyCaller {
			q.Credential = Credential{Kind: CredentialMalformed, Value: errCertificateNeedsCaller}
		}
		res := z.V.Decide(r.Context(), q)
		d := AuthZENDecision{Decision: res.Allowed()}
		if !res.Allowed() && res.Outcome != Forbidden {
			d.Context = &AuthZENDecisionContext{Code: res.Code, Reason: res.Decision.Reason}
		}
		out = append(out, d)
		if semantic == SemanticDenyOnFirstDeny && !d.Decision || semantic == SemanticPermitOnFirstPermit && d.Decision {
			break
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if single {
		json.NewEncoder(w).Encode(out[0])
		return
	}
	json.NewEncoder(w).Encode(authzenBatchResponse{Evaluations: out})
}

// read parses and checks a whole request before anything is decided: one
// query per evaluation, the batch semantic, and whether the answer is a
// single decision.
func (z *AuthZEN) read(r *http.Request, batch bool) (qs []Query, semantic string, single bool, err error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, "", false, badAuthZEN("Content-Type %q: send application/json", ct)
		}
		if bad := checkContentType(ct); bad != nil { // the body is read as UTF-8
			return nil, "", false, badAuthZEN("%s", bad.Error())
		}
	}
	limit := int64(MaxAuthZENBody)
	if batch {
		limit = MaxAuthZENBatchBody
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, "", false, badAuthZEN("reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		return nil, "", false, badAuthZEN("the body is over %d bytes, the limit of %s", limit, r.URL.Path)
	}
	return z.parse(body, batch)
}

func (z *AuthZEN) parse(body []byte, batch bool) ([]Query, string, bool, error) {
	// One pass builds the request down to a batch item's subject
	// properties (top, evaluations, item, subject, properties), so that a
	// credential string is scanned once; deeper values stay raw.
	v, err := strictjson.Decode(body, maxAuthZENDepth, 5)
	if err != nil {
		return nil, "", false, badAuthZEN("malformed JSON: %v", err)
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, "", false, badAuthZEN("the body must be a JSON object")
	}
	var evals []any
	semantic := SemanticExecuteAll
	if batch {
		if ev, ok := top["evaluations"]; ok && ev != nil {
			arr, err := decodeArray(ev)
			if err != nil {
				return nil, "", false, badAuthZEN("evaluations: %v", err)
			}
			evals = arr
		}
		max := z.MaxBatch
		if max <= 0 {
			max = DefaultAuthZENMaxBatch
		}
		if len(evals) > max {
			return nil, "", false, badAuthZEN("evaluations has %d items; this PDP decides at most %d per request (authzen max_batch): split the batch", len(evals), max)
		}
		if opts, ok := top["options"]; ok && opts != nil {
			o, err := decodeObject(opts)
			if err != nil {
				return nil, "", false, badAuthZEN("options: %v", err)
			}
			if s, ok := o["evaluations_semantic"]; ok {
				str, _ := s.(string)
				switch str {
				case SemanticExecuteAll, SemanticDenyOnFirstDeny, SemanticPermitOnFirstPermit:
					semantic = str
				default:
					return nil, "", false, badAuthZEN("options.evaluations_semantic must be one of %q, %q, %q", SemanticExecuteAll, SemanticDenyOnFirstDeny, SemanticPermitOnFirstPermit)
				}
			}
		}
	}
	if len(evals) == 0 { // a single evaluation (an empty batch behaves as one)
		q, err := z.query("", top, nil)
		if err != nil {
			return nil, "", false, err
		}
		return []Query{q}, semantic, true, nil
	}
	qs := make([]Query, len(evals))
	for i, e := range evals {
		item, err := decodeObject(e)
		if err != nil {
			return nil, "", false, badAuthZEN("evaluations[%d]: %v", i, err)
		}
		if qs[i], err = z.query(fmt.Sprintf("evaluations[%d].", i), item, top); err != nil {
			return nil, "", false, err
		}
	}
	return qs, semantic, false, nil
}

// query builds the query of one evaluation: the keys of item, else those
// of defaults (the batch's top level).
func (z *AuthZEN) query(where string, item, defaults map[string]any) (Query, error) {
	q := Query{Frontend: FrontendAuthZEN}
	get := func(k string) (any, string) {
		if v, ok := item[k]; ok && v != nil {
			return v, where + k
		}
		if v, ok := defaults[k]; ok && v != nil {
			return v, k
		}
		return nil, where + k
	}
	// subject
	sv, path := get("subject")
	if sv == nil {
		return q, badAuthZEN("%s is required", path)
	}
	if err := z.subject(&q, sv, path); err != nil {
		return q, err
	}
	// action
	av, path := get("action")
	if av == nil {
		return q, badAuthZEN("%s is required", path)
	}
	act, err := decodeObject(av)
	if err != nil {
		return q, badAuthZEN("%s: %v", path, err)
	}
	name, err := requiredString(act, "name", path, MaxNameLen)
	if err != nil {
		return q, err
	}
	q.Action = Action{Kind: policies.KindAuthZEN, Name: name}
	if q.ActionProperties, err = properties(act, path); err != nil {
		return q, err
	}
	// resource
	rv, path := get("resource")
	if rv == nil {
		return q, badAuthZEN("%s is required", path)
	}
	if q.Resource, err = entity(rv, path); err != nil {
		return q, err
	}
	// context
	if cv, path := get("context"); cv != nil {
		if _, err := decodeObject(cv); err != nil {
			return q, badAuthZEN("%s: %v", path, err)
		}
		q.Context = rawJSON(cv)
	}
	return q, nil
}

func (z *AuthZEN) subject(q *Query, v any, path string) error {
	obj, err := decodeObject(v)
	if err != nil {
		return badAuthZEN("%s: %v", path, err)
	}
	typ, err := requiredString(obj, "type", path, MaxAuthZENField)
	if err != nil {
		return err
	}
	id, err := requiredString(obj, "id", path, MaxAuthZENField)
	if err != nil {
		return err
	}
	switch {
	case typ == policies.SubjectAgentTask:
		q.SubjectID = id
		props := map[string]any{}
		if p, ok := obj["properties"]; ok && p != nil {
			if props, err = decodeObject(p); err != nil {
				return badAuthZEN("%s.properties: %v", path, err)
			}
		}
		for _, k := range []string{AuthZENPropJWT, AuthZENPropCertificate} {
			pv, ok := props[k]
			if !ok {
				continue
			}
			s, ok := pv.(string)
			if !ok {
				return badAuthZEN("%s.properties.%s must be a string", path, k)
			}
			if q.Credential.Kind != CredentialNone {
				return badAuthZEN("%s.properties: give one of %q and %q", path, AuthZENPropJWT, AuthZENPropCertificate)
			}
			q.Credential = Credential{Kind: CredentialJWT, Value: s}
			if k == AuthZENPropCertificate {
				q.Credential.Kind = CredentialPEM
			}
		}
		// no credential: the pipeline refuses it with no_credential
		return nil
	case slices.Contains(z.SubjectTypes, typ):
		q.Subject = policies.Entity{Type: typ, ID: id}
		q.Subject.Properties, err = properties(obj, path)
		return err
	}
	accepted := append([]string{policies.SubjectAgentTask + " (proven by its credential)"}, z.SubjectTypes...)
	return badAuthZEN("%s.type %s is not a subject type this PDP accepts: %s", path, strictjson.Quote(cut512(typ)), strings.Join(accepted, ", "))
}

func entity(v any, path string) (policies.Entity, error) {
	obj, err := decodeObject(v)
	if err != nil {
		return policies.Entity{}, badAuthZEN("%s: %v", path, err)
	}
	var e policies.Entity
	if e.Type, err = requiredString(obj, "type", path, MaxAuthZENField); err != nil {
		return e, err
	}
	if e.ID, err = requiredString(obj, "id", path, MaxAuthZENField); err != nil {
		return e, err
	}
	e.Properties, err = properties(obj, path)
	return e, err
}

func requiredString(obj map[string]any, key, path string, max int) (string, error) {
	v, ok := obj[key]
	if !ok || v == nil {
		return "", badAuthZEN("%s.%s is required", path, key)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", badAuthZEN("%s.%s must be a non-empty string", path, key)
	}
	if len(s) > max {
		return "", badAuthZEN("%s.%s has %d bytes, over the limit of %d", path, key, len(s), max)
	}
	return s, nil
}

func properties(obj map[string]any, path string) (json.RawMessage, error) {
	p, ok := obj["properties"]
	if !ok || p == nil {
		return nil, nil
	}
	if _, err := decodeObject(p); err != nil {
		return nil, badAuthZEN("%s.properties: %v", path, err)
	}
	return rawJSON(p), nil
}

// decodeObject returns v as an object whose members are kept as raw JSON
// (strings as strings): v is a built map or raw JSON from strictjson.
func decodeObject(v any) (map[string]any, error) {
	switch x := v.(type) {
	case map[string]any:
		return x, nil
	case json.RawMessage:
		if len(x) > 0 && x[0] == '{' {
			d, err := strictjson.Decode(x, maxAuthZENDepth, 1)
			if err != nil {
				return nil, err
			}
			if m, ok := d.(map[string]any); ok {
				return m, nil
			}
		}
	}
	return nil, errors.New("must be a JSON object")
}

func decodeArray(v any) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case json.RawMessage:
		if len(x) > 0 && x[0] == '[' {
			d, err := strictjson.Decode(x, maxAuthZENDepth, 1)
			if err != nil {
				return nil, err
			}
			if a, ok := d.([]any); ok {
				return a, nil
			}
		}
	}
	return nil, errors.New("must be a JSON array")
}

func rawJSON(v any) json.RawMessage {
	if r, ok := v.(json.RawMessage); ok {
		return r
	}
	b, _ := json.Marshal(v)
	return b
}
