package verifier

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Identity headers the proxy and the ext_authz server set for the upstream
// (and strip from incoming requests, so that a caller cannot forge them).
const (
	HeaderPrefix    = "x-agentid-"
	HeaderSPIFFEID  = "x-agentid-spiffe-id"
	HeaderAgent     = "x-agentid-agent"
	HeaderTask      = "x-agentid-task"
	HeaderPrincipal = "x-agentid-principal"
	HeaderClaims    = "x-agentid-claims" // base64url of the canonical claims JSON
	HeaderRule      = "x-agentid-rule"
	// HeaderReceipt is the reference (audit.Ref: log origin and leaf
	// index) of the durable audit record of an allowed decision, when the
	// Verifier hands out receipts.
	HeaderReceipt    = "x-agentid-receipt"
	HeaderDenyReason = "x-agentid-deny-reason"
)

// MaxBearerLen bounds a bearer token (JWT-SVID) accepted from a header.
const MaxBearerLen = 16 << 10

// ServerTLSConfig returns an mTLS server config that accepts any client with
// an SVID from the bundle; authorization is left to the Verifier
// (middleware, interceptors), which sees the claims. It is go-spiffe's
// tlsconfig.MTLSServerConfig with tlsconfig.AuthorizeAny.
func ServerTLSConfig(svid x509svid.Source, bundle x509bundle.Source) *tls.Config {
	return tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeAny())
}

// ClientTLSConfig returns an mTLS client config presenting svid and
// accepting a server authorized by authorizer.
func ClientTLSConfig(svid x509svid.Source, bundle x509bundle.Source, authorizer tlsconfig.Authorizer) *tls.Config {
	return tlsconfig.MTLSClientConfig(svid, bundle, authorizer)
}

type ctxKey struct{}

// authorized is what the middleware and the interceptors put in the
// request context: one value, one allocation.
type authorized struct {
	peer     Peer
	decision Decision
}

// PeerFromContext returns the authenticated peer that the middleware or an
// interceptor stored. The Peer is immutable (its Claims are a copy).
func PeerFromContext(ctx context.Context) (*Peer, bool) {
	a, ok := ctx.Value(ctxKey{}).(*authorized)
	if !ok {
		return nil, false
	}
	return &a.peer, true // this request's copy; its fields cannot be changed
}

// DecisionFromContext returns the decision that allowed the request.
// Its Receipt is set when the Verifier hands out receipts.
func DecisionFromContext(ctx context.Context) (Decision, bool) {
	a, ok := ctx.Value(ctxKey{}).(*authorized)
	if !ok {
		return Decision{}, false
	}
	return a.decision, true
}

// ReceiptFromContext returns the reference of the audit record of the
// decision that allowed the request: durable when the middleware (or an
// interceptor) called the handler, provable with `agentid audit prove
// --ref` once a checkpoint covers it. False when the Verifier hands out
// no receipts (Verifier.Receipts) or the record could not be written and
// the operator chose AuditFailOpen.
func ReceiptFromContext(ctx context.Context) (audit.Ref, bool) {
	a, ok := ctx.Value(ctxKey{}).(*authorized)
	if !ok || a.decision.Receipt.IsZero() {
		return audit.Ref{}, false
	}
	return a.decision.Receipt, true
}

func withPeer(ctx context.Context, r *Result) context.Context {
	return context.WithValue(ctx, ctxKey{}, &authorized{r.Peer, r.Decision})
}

// HTTPCredential is the credential of r: its TLS client certificate chain
// (re-verified against the bundles, cached) or else an "Authorization:
// Bearer <JWT-SVID>" header. An oversized or empty bearer is a malformed
// credential, not an absent one.
func HTTPCredential(r *http.Request) Credential {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return Credential{Kind: CredentialX509, Chain: r.TLS.PeerCertificates}
	}
	return bearerCredential(r.Header.Values("Authorization"))
}

// bearerCredential reads the Authorization header's values: none is no
// credential, one Bearer token a JWT credential, anything else malformed.
func bearerCredential(values []string) Credential {
	if len(values) == 0 {
		return Credential{}
	}
	if len(values) > 1 {
		return Credential{Kind: CredentialMalformed, Value: "more than one Authorization header"}
	}
	scheme, tok, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Credential{} // another scheme is not ours to judge
	}
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return Credential{Kind: CredentialMalformed, Value: "empty bearer token"}
	case len(tok) > MaxBearerLen:
		return Credential{Kind: CredentialMalformed, Value: fmt.Sprintf("bearer token of %d bytes exceeds %d", len(tok), MaxBearerLen)}
	}
	return Credential{Kind: CredentialJWT, Value: tok}
}

// AuthenticateHTTP authenticates the peer of r (see HTTPCredential).
func (a *Authenticator) AuthenticateHTTP(r *http.Request) (Peer, error) {
	return a.Authenticate(HTTPCredential(r))
}

// HTTPAction maps a request to an http action: method and the path as it
// was sent (without the query), which the pipeline accepts only when
// canonical.
func HTTPAction(r *http.Request) Action {
	return Action{Kind: policies.KindHTTP, Method: r.Method, Path: requestPath(r)}
}

// requestPath is the path as the client sent it: the request-target of a
// server request (not r.URL.Path, which Go has already decoded), else the
// URL's escaped path.
func requestPath(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return stripQuery(r.RequestURI)
	}
	return r.URL.EscapedPath()
}

// Middleware authenticates each request, asks the policy and either calls
// next with the peer and decision in the context (PeerFromContext,
// DecisionFromContext) or refuses: 401 when the peer did not authenticate,
// 403 when the policy denied, 400/414 for a request that cannot be decided
// as sent (a form or JSON POST body with a "_method" field among them: such
// bodies are read, up to MaxFormBody — 413 above —, and the handler reads
// the same bytes; 415 for such a body, or an MCP message, whose
// Content-Type names a charset other than UTF-8 or whose Content-Encoding
// is not identity: contenttype.go), 503 when the decision could not be
// recorded. Incoming x-agentid-* headers are removed from the request
// first: only the verifier speaks with them, and a handler gets the
// identity from the context, never from r.Header.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return v.MiddlewareFunc(HTTPAction, next)
}

// MiddlewareFunc is Middleware with the request-to-action mapping given.
func (v *Verifier) MiddlewareFunc(action func(*http.Request) Action, next http.Handler) http.Handler {
	return v.httpHandler(FrontendHTTP, action, func() []string { return nil }, next)
}

// httpHandler is the HTTP adapter over the pipeline for the middleware and
// the proxy: POSTs to one of mcpPaths are decided as MCP messages.
func (v *Verifier) httpHandler(frontend string, action func(*http.Request) Action, mcpPaths func() []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A caller's x-agentid-* headers are neither decided on nor seen by
		// the handler or the upstream: only the verifier speaks with them
		// (the proxy strips them in ServeHTTP, for its Rewrite too).
		StripIdentityHeaders(r.Header)
		p := getPending()
		q, res := &p.q, &p.r
		q.Frontend, q.Credential, q.Action = frontend, HTTPCredential(r), action(r)
		q.Request = Request{Headers: r.Header, Source: remoteAddr(r.RemoteAddr)}
		if r.Method == http.MethodPost && isMCPPath(mcpPaths(), q.Action.Path) {
			q.MCP = true
			var err error
			if q.Body, err = readBody(r); err != nil {
				p.release()
				refuse(w, http.StatusBadRequest, "bad_request: reading the body: "+err.Error())
				return
			}
		}
		q.GRPC = r.Method == http.MethodPost && !q.MCP && q.Action.Kind == policies.KindHTTP && isGRPCContentType(r.Header.Values("Content-Type")...)
		if r.Method == http.MethodPost && !q.MCP && !q.GRPC && q.Action.Kind == policies.KindHTTP && formKindOf(formContentType(r.Header["Content-Type"])) != formNone {
			// Rails and Laravel read "_method" from a form (Laravel: and a
			// JSON) body: read (bounded), checked by the pipeline,
			// forwarded as read.
			q.Form = true
			var err error
			max := v.maxFormBody()
			if q.Body, err = readBodyMax(r, max); err != nil {
				p.release()
				refuse(w, http.StatusBadRequest, "bad_request: reading the body: "+err.Error())
				return
			}
			if len(q.Body) > max {
				q.Invalid = tooLarge(formBodyWhat, len(q.Body), max)
			}
		}
		if q.Invalid == nil && methodOverrideParam(r.URL.RawQuery) {
			q.Invalid = badInput("method", "a \"_method\" query parameter is refused: frameworks that honour it run another method than the one decided (send the method itself)")
		}
		if v.Signatures != nil && q.Invalid == nil {
			q.Signed, q.Invalid = signedRequest(r, q.Body, q.MCP || q.Form)
		}
		if frontend == FrontendProxy && q.Action.Kind == policies.KindHTTP {
			// What is forwarded is r.URL's path: it must be the one decided.
			if fwd := r.URL.EscapedPath(); fwd != q.Action.Path {
				q.Invalid = badInput("path", "%s would be forwarded as %s", quotePath(q.Action.Path), quotePath(fwd))
			}
		} else if q.Action.Kind == policies.KindHTTP && q.Action.Path == requestPath(r) && q.Invalid == nil {
			// The handler serves r.URL's path: a router in front that
			// rewrote it (http.StripPrefix, a mount) would have it serve
			// another path than the one decided.
			if served := r.URL.EscapedPath(); served != q.Action.Path {
				q.Invalid = badInput("path", "%s was decided but a router in front of the middleware rewrote the URL to %s, which the handler would serve (put the middleware outside routers that rewrite URLs, or map the action with MiddlewareFunc)", quotePath(q.Action.Path), quotePath(served))
			}
		}
		p.decide(v)
		if !res.Allowed() {
			if q.MCP && (res.Outcome == BadRequest || res.Outcome == TooLarge) {
				refuseJSONRPC(w, res)
			} else {
				refuse(w, res.HTTPStatus(), res.Message())
			}
			p.release()
			return
		}
		ctx := withPeer(r.Context(), res)
		if frontend == FrontendHTTP && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			expires, action := res.Peer.Expires(), q.Action
			p.release()
			v.serveBody(w, r.WithContext(ctx), action, expires, next)
			return
		}
		p.release()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// serveBody serves a request with a body (an upload) to the middleware's
// handler under a streamGuard for the decided action: every read of the
// body re-checks the peer and, once it is refused, fails; the handler's
// context is cancelled, and while the body is not read to its end the
// connection's read deadline is moved to now, which ends a read blocked on
// an idle client (and the connection, which cannot be kept alive). A body of unknown
// length or over LongBodyBytes also arms the idle re-check (every
// StreamRecheckInterval); a short one needs no timer. Moving the read
// deadline needs the server's ResponseWriter, or a wrapper with Unwrap
// (http.ResponseController); behind one without, a handler blocked on an
// idle client stays blocked until the client sends (its data is still
// refused).
func (v *Verifier) serveBody(w http.ResponseWriter, r *http.Request, action Action, expires time.Time, next http.Handler) {
	q := Query{Frontend: FrontendHTTP, Credential: HTTPCredential(r), Action: action, Request: Request{Source: remoteAddr(r.RemoteAddr)}}
	rc := http.NewResponseController(w)
	body := &checkedBody{ReadCloser: r.Body}
	body.g = v.newCheckGuard(r.Context(), &q, expires, func(res *Result) error { return errors.New(res.Message()) }, func(error) {
		if !body.ended.Load() {
			// The server cannot read the rest of a body cut before its
			// end, so it does not keep the connection alive; a deadline
			// moved once the body had ended would instead cancel the next
			// request's context on the kept-alive connection.
			rc.SetReadDeadline(time.Now())
		}
	})
	if longBody(r.ContentLength) {
		body.g.arm()
	}
	defer body.g.stop()
	out := r.WithContext(body.g.ctx)
	out.Body = body
	next.ServeHTTP(w, out)
}

func quotePath(p string) string { return strconv.Quote(truncate(p)) }

// refuseJSONRPC answers a malformed MCP request with its HTTP status and a
// JSON-RPC error (-32600 Invalid Request).
func refuseJSONRPC(w http.ResponseWriter, res *Result) {
	id := res.MCPID
	if id == nil {
		id = []byte("null")
	}
	msg, _ := json.Marshal(res.Message())
	w.Header().Set(HeaderDenyReason, headerSafe(res.Message()))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(res.HTTPStatus())
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32600,"message":%s}}`+"\n", id, msg)
}

func refuse(w http.ResponseWriter, code int, reason string) {
	reason = headerSafe(reason)
	w.Header().Set(HeaderDenyReason, reason)
	http.Error(w, http.StatusText(code)+": "+reason, code)
}

// HeaderSet selects which identity headers the proxy and the ext_authz
// server send upstream (the receipt header is sent whenever the Verifier
// hands out receipts). The zero value means DefaultHeaders.
type HeaderSet uint8

// The identity headers, one bit each.
const (
	SendAgent HeaderSet = 1 << iota
	SendClaims
	SendPrincipal
	SendRule
	SendSPIFFEID
	SendTask

	// DefaultHeaders are the identity headers sent unless configured:
	// every one but x-agentid-claims. The claims header (base64url JSON of
	// every claim, ~400 bytes) is two thirds of an OK response's size and
	// costs ext_authz throughput (README, issue 10): services that read
	// scope, model, prompt digest or the chain from it turn it on.
	DefaultHeaders = SendAgent | SendPrincipal | SendRule | SendSPIFFEID | SendTask
	// AllHeaders are every identity header.
	AllHeaders = DefaultHeaders | SendClaims
)

// headerNames are the configuration names of the identity headers.
var headerNames = []struct {
	name string
	bit  HeaderSet
}{
	{"agent", SendAgent}, {"claims", SendClaims}, {"principal", SendPrincipal},
	{"rule", SendRule}, {"spiffe_id", SendSPIFFEID}, {"task", SendTask},
}

// ParseHeaderSet reads configuration names ("agent", "claims",
// "principal", "rule", "spiffe_id", "task"); an unknown or repeated name
// is an error, and so is an empty list.
func ParseHeaderSet(names []string) (HeaderSet, error) {
	var set HeaderSet
	for _, n := range names {
		i := slices.IndexFunc(headerNames, func(h struct {
			name string
			bit  HeaderSet
		}) bool {
			return h.name == n
		})
		if i < 0 {
			return 0, fmt.Errorf("unknown identity header %q (expected one of agent, claims, principal, rule, spiffe_id, task)", n)
		}
		if set&headerNames[i].bit != 0 {
			return 0, fmt.Errorf("identity header %q named twice", n)
		}
		set |= headerNames[i].bit
	}
	if set == 0 {
		return 0, fmt.Errorf("no identity header named (expected one or more of agent, claims, principal, rule, spiffe_id, task)")
	}
	return set, nil
}

// orDefault is s, or DefaultHeaders for the zero value.
func (s HeaderSet) orDefault() HeaderSet {
	if s == 0 {
		return DefaultHeaders
	}
	return s
}

// SetIdentityHeaders replaces any x-agentid-* headers in h with the peer's
// identity and the deciding rule (every identity header: AllHeaders).
func SetIdentityHeaders(h http.Header, p *Peer, d Decision) {
	setIdentityHeaders(h, p, d, AllHeaders)
}

func setIdentityHeaders(h http.Header, p *Peer, d Decision, set HeaderSet) {
	StripIdentityHeaders(h)
	identityHeaders(p, ruleHeader(&d), d.Receipt.String(), set, func(k, v string) { h.Set(k, v) })
}

// StripIdentityHeaders removes every x-agentid-* header (in any case).
func StripIdentityHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(HeaderPrefix) && strings.EqualFold(k[:len(HeaderPrefix)], HeaderPrefix) {
			delete(h, k)
		}
	}
}

// IdentityHeaders renders the peer's identity as upstream headers (every
// identity header: AllHeaders).
func IdentityHeaders(p *Peer, d Decision) map[string]string {
	out := make(map[string]string, 7)
	identityHeaders(p, ruleHeader(&d), d.Receipt.String(), AllHeaders, func(k, v string) { out[k] = v })
	return out
}

// ruleHeader is the x-agentid-rule value of d ("" without a rule): for
// an allow, its one rule, without allocating.
func ruleHeader(d *Decision) string {
	if len(d.Rules) == 0 {
		return ""
	}
	return headerSafe(strings.Join(d.RuleStrings(), ", "))
}

// identityHeaders calls f for each identity header, in key order; rule is
// ruleHeader's, receipt the decision's audit reference ("" without).
func identityHeaders(p *Peer, rule, receipt string, set HeaderSet, f func(k, v string)) {
	c := p.claims
	if c != nil {
		if set&SendAgent != 0 {
			f(HeaderAgent, c.Agent)
		}
		if set&SendClaims != 0 {
			f(HeaderClaims, p.claimsB64)
		}
		if set&SendPrincipal != 0 {
			f(HeaderPrincipal, headerSafe(c.Principal))
		}
	}
	if receipt != "" {
		f(HeaderReceipt, receipt)
	}
	if rule != "" && set&SendRule != 0 {
		f(HeaderRule, rule)
	}
	if set&SendSPIFFEID != 0 {
		f(HeaderSPIFFEID, p.id.String())
	}
	if c != nil && set&SendTask != 0 {
		f(HeaderTask, c.Task)
	}
}

// headerSafe keeps printable ASCII only and bounds the length.
func headerSafe(s string) string {
	safe := len(s) <= 512
	for i := 0; safe && i < len(s); i++ {
		safe = s[i] >= 0x20 && s[i] < 0x7f
	}
	if safe {
		return s // the common case, without a copy
	}
	b := make([]byte, 0, min(len(s), 512))
	for i := 0; i < len(s) && len(b) < 512; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

func remoteAddr(s string) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s)
	return ap
}
