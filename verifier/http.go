package verifier

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Identity headers the proxy and the ext_authz server set for the upstream
// (and strip from incoming requests, so that a caller cannot forge them).
const (
	HeaderPrefix     = "x-agentid-"
	HeaderSPIFFEID   = "x-agentid-spiffe-id"
	HeaderAgent      = "x-agentid-agent"
	HeaderTask       = "x-agentid-task"
	HeaderPrincipal  = "x-agentid-principal"
	HeaderClaims     = "x-agentid-claims" // base64url of the canonical claims JSON
	HeaderRule       = "x-agentid-rule"
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
// interceptor stored.
func PeerFromContext(ctx context.Context) (*Peer, bool) {
	a, ok := ctx.Value(ctxKey{}).(*authorized)
	if !ok {
		return nil, false
	}
	return &a.peer, true
}

// DecisionFromContext returns the decision that allowed the request.
func DecisionFromContext(ctx context.Context) (Decision, bool) {
	a, ok := ctx.Value(ctxKey{}).(*authorized)
	if !ok {
		return Decision{}, false
	}
	return a.decision, true
}

func withPeer(ctx context.Context, p *Peer, d Decision) context.Context {
	return context.WithValue(ctx, ctxKey{}, &authorized{*p, d})
}

// AuthenticateHTTP authenticates the peer of r: its TLS client certificate
// chain (re-verified against the bundles, cached) or else an
// "Authorization: Bearer <JWT-SVID>" header.
func (a *Authenticator) AuthenticateHTTP(r *http.Request) (Peer, error) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return a.Certificates(r.TLS.PeerCertificates)
	}
	if tok, ok := bearer(r.Header.Get("Authorization")); ok {
		return a.JWT(tok)
	}
	return Peer{}, deny(ReasonNoCredential, errors.New("no client certificate or bearer JWT-SVID"))
}

func bearer(h string) (string, bool) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" || len(tok) > MaxBearerLen {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// HTTPAction maps a request to an http action: method and path.
func HTTPAction(r *http.Request) Action {
	return Action{Kind: "http", Method: r.Method, Path: r.URL.Path}
}

// Middleware authenticates each request, asks the policy and either calls
// next with the peer and decision in the context (PeerFromContext,
// DecisionFromContext) or answers 403 with the reason (401 when the peer did
// not authenticate).
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return v.MiddlewareFunc(HTTPAction, next)
}

// MiddlewareFunc is Middleware with the request-to-action mapping given.
func (v *Verifier) MiddlewareFunc(action func(*http.Request) Action, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := action(r)
		p, err := v.Auth.AuthenticateHTTP(r)
		if err != nil {
			d := v.Denied(action, err)
			refuse(w, http.StatusUnauthorized, d.Reason)
			return
		}
		d := v.Check(r.Context(), &p, action, Request{Headers: r.Header, Source: remoteAddr(r.RemoteAddr)})
		if !d.Allow {
			refuse(w, http.StatusForbidden, d.Explanation())
			return
		}
		next.ServeHTTP(w, r.WithContext(withPeer(r.Context(), &p, d)))
	})
}

func refuse(w http.ResponseWriter, code int, reason string) {
	reason = headerSafe(reason)
	w.Header().Set(HeaderDenyReason, reason)
	http.Error(w, http.StatusText(code)+": "+reason, code)
}

// SetIdentityHeaders replaces any x-agentid-* headers in h with the peer's
// identity and the deciding rule.
func SetIdentityHeaders(h http.Header, p *Peer, d Decision) {
	StripIdentityHeaders(h)
	for k, v := range IdentityHeaders(p, d) {
		h.Set(k, v)
	}
}

// StripIdentityHeaders removes every x-agentid-* header.
func StripIdentityHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), HeaderPrefix) {
			delete(h, k)
		}
	}
}

// IdentityHeaders renders the peer's identity as upstream headers.
func IdentityHeaders(p *Peer, d Decision) map[string]string {
	out := make(map[string]string, 6)
	identityHeaders(p, d, func(k, v string) { out[k] = v })
	return out
}

// identityHeaders calls f for each identity header, in key order.
func identityHeaders(p *Peer, d Decision, f func(k, v string)) {
	c := p.Claims
	if c != nil {
		f(HeaderAgent, c.Agent)
		js := p.ClaimsJSON
		if js == nil { // a Peer built by hand
			js = c.AppendJSON(nil)
		}
		f(HeaderClaims, base64.RawURLEncoding.EncodeToString(js))
		f(HeaderPrincipal, headerSafe(c.Principal))
	}
	if len(d.Rules) > 0 {
		f(HeaderRule, headerSafe(strings.Join(d.RuleStrings(), ", "))) // one rule: no allocation but headerSafe's
	}
	f(HeaderSPIFFEID, p.ID.String())
	if c != nil {
		f(HeaderTask, c.Task)
	}
}

// headerSafe keeps printable ASCII only and bounds the length.
func headerSafe(s string) string {
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
