// Package mcpauth puts agentid's task-scoped authorization in front of an
// MCP server written with github.com/modelcontextprotocol/go-sdk: every
// tools/call, resources/read and prompts/get is decided by the HCL policy
// (with the tool's arguments in action.arguments), the tools, resources
// and prompts lists are filtered to what the task may use, and the peer
// authenticates with a JWT-SVID whose audience is the server's resource
// URI (RFC 8707) or with its X.509-SVID over mTLS.
//
// Everything goes through the one decision pipeline of
// [verifier.Verifier] (front-end "mcp"): credentials, audience, claims,
// liveness, canonical action, policy, audit, metrics. The package decides
// nothing on its own.
//
//	a, _ := mcpauth.New(v, mcpauth.Options{Resource: "https://files.example.org/mcp"})
//	a.Install(server)                                  // receiving + sending middleware
//	mux.Handle("/mcp", a.Handler(mcp.NewStreamableHTTPHandler(…)))
//	mux.Handle(a.MetadataPath(), a.MetadataHandler())  // RFC 9728
//
// Refusals of a call are MCP errors (JSON-RPC error responses) whose
// message names the deciding rule; over HTTP, a request without a valid
// credential is answered 401 and a JWT-SVID peer denied for want of a
// scope 403, both with the WWW-Authenticate challenge of the MCP
// authorization specification.
package mcpauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// JSON-RPC error codes of refusals, in the implementation-defined server
// error range and clear of go-sdk's own (-32001 to -32005 are its
// transport errors, -32002 and -32020 to -32022, -32042 MCP's); the
// error's data says more (see Refusal).
const (
	CodeUnauthenticated = -32030 // no, or no valid, credential
	CodeForbidden       = -32031 // the policy denied the request
	CodeUnavailable     = -32032 // the decision could not be recorded
	// A request that cannot be decided as sent (arguments that are not one
	// JSON object, a tool the server does not have) is
	// jsonrpc.CodeInvalidParams.
)

// Refusal is the data of a refusal's JSON-RPC error.
type Refusal struct {
	// Code is the pipeline's reason code: "forbidden", "no_credential",
	// "wrong_audience", "bad_request", "revoked", …
	Code string `json:"code"`
	// Rules are the deciding rules, "name (file:line)".
	Rules []string `json:"rules,omitempty"`
	// Scopes, for a denial, are scopes that would have allowed the request.
	Scopes []string `json:"scopes,omitempty"`
}

// Options configure an Auth.
type Options struct {
	// Resource is the server's canonical resource URI (RFC 8707 / RFC
	// 9728 "resource"), e.g. "https://files.example.org/mcp": the
	// audience a JWT-SVID must name. Required. The Verifier's
	// Authenticator must accept it too (verifier.Config.Audiences).
	Resource string
	// ResourceMetadataURL is where the RFC 9728 metadata is served, sent
	// in WWW-Authenticate. Default: the well-known URI of Resource
	// (https://host/.well-known/oauth-protected-resource/path).
	ResourceMetadataURL string
	// AuthorizationServers, ScopesSupported, ResourceName go into the
	// metadata. JWT-SVIDs come from the SPIFFE Workload API, not from an
	// OAuth authorization server, so AuthorizationServers may stay empty.
	AuthorizationServers []string
	ScopesSupported      []string
	ResourceName         string
	// Credential gives the credential of a request that did not come
	// through Handler or VerifyToken (stdio, in-memory transports): the
	// peer of the whole session, e.g. the JWT-SVID of the task that
	// launched a stdio server. Without it such requests are refused
	// (no_credential).
	Credential func(ctx context.Context, req mcp.Request) (verifier.Credential, bool)
}

// Auth is the authorization of one MCP server (one resource URI). It is
// safe for concurrent use.
type Auth struct {
	v            *verifier.Verifier
	opts         Options
	metaURL      string
	metaPath     string
	tools        atomic.Pointer[map[string]struct{}] // the server's tool names, nil: unknown
	toolsRefresh sync.Mutex
}

// New returns the authorization of the server at opts.Resource, deciding
// with v.
func New(v *verifier.Verifier, opts Options) (*Auth, error) {
	if v == nil || v.Auth == nil || v.Policy == nil {
		return nil, errors.New("mcpauth: a Verifier with an Authenticator and a Policy is required")
	}
	u, err := url.Parse(opts.Resource)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
		return nil, fmt.Errorf("mcpauth: Resource %q is not an absolute URI without a fragment (RFC 8707)", opts.Resource)
	}
	a := &Auth{v: v, opts: opts}
	a.metaPath = "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/")
	a.metaURL = opts.ResourceMetadataURL
	if a.metaURL == "" {
		a.metaURL = u.Scheme + "://" + u.Host + a.metaPath
	}
	return a, nil
}

// Resource is the server's resource URI.
func (a *Auth) Resource() string { return a.opts.Resource }

// Metadata is the RFC 9728 protected resource metadata of the server.
func (a *Auth) Metadata() *oauthex.ProtectedResourceMetadata {
	return &oauthex.ProtectedResourceMetadata{
		Resource:                              a.opts.Resource,
		AuthorizationServers:                  a.opts.AuthorizationServers,
		ScopesSupported:                       a.opts.ScopesSupported,
		BearerMethodsSupported:                []string{"header"},
		ResourceName:                          a.opts.ResourceName,
		TLSClientCertificateBoundAccessTokens: false,
	}
}

// identity travels in auth.TokenInfo.Extra from Handler or VerifyToken
// to the middleware: the credential to decide each request with, and the
// decision Handler already took for the one message of its HTTP request.
type identity struct {
	cred    verifier.Credential
	decided *verifier.Result
	request verifier.Request // the HTTP request's context (headers, source), from Handler
}

// extraKey is the TokenInfo.Extra key of the identity; the value's type is
// this package's own, so no other code can make one up.
const extraKey = "agentid.identity"

// Extra keys of TokenInfo that handlers may read.
const (
	ExtraSPIFFEID  = "spiffe_id"
	ExtraAgent     = "agent"
	ExtraTask      = "task"
	ExtraModel     = "model"
	ExtraPrincipal = "principal"
	ExtraChain     = "chain"
	ExtraPrompt    = "prompt"
)

func tokenInfo(p *verifier.Peer, id *identity) *auth.TokenInfo {
	ti := &auth.TokenInfo{Expiration: p.Expires(), UserID: p.ID().String(),
		Extra: map[string]any{extraKey: id, ExtraSPIFFEID: p.ID().String()}}
	if c, ok := p.Claims(); ok {
		ti.Scopes = c.Scope
		ti.Extra[ExtraAgent], ti.Extra[ExtraTask], ti.Extra[ExtraModel] = c.Agent, c.Task, c.Model
		ti.Extra[ExtraPrincipal], ti.Extra[ExtraChain], ti.Extra[ExtraPrompt] = c.Principal, c.Chain, c.Prompt
	}
	return ti
}

// VerifyToken is an auth.TokenVerifier: it authenticates a JWT-SVID
// through the pipeline (signature, audience = the resource URI, claims,
// trust domains, liveness; a refusal is audited) and returns the task's
// scopes and claims as TokenInfo (UserID is the SPIFFE ID, so go-sdk
// refuses a session to another peer). Use it with auth.RequireBearerToken,
// or use Handler, which also takes mTLS peers and answers 403 with the
// scope a denied call needs.
func (a *Auth) VerifyToken(ctx context.Context, token string, req *http.Request) (*auth.TokenInfo, error) {
	q := verifier.Query{Frontend: verifier.FrontendMCP, Audience: a.opts.Resource,
		Credential: verifier.Credential{Kind: verifier.CredentialJWT, Value: token}}
	if req != nil {
		q.Request = requestOf(req)
	}
	r := a.v.Authenticate(ctx, &q)
	if !r.Authenticated {
		return nil, fmt.Errorf("%w: %s", auth.ErrInvalidToken, r.Message())
	}
	return tokenInfo(&r.Peer, &identity{cred: q.Credential}), nil
}

// Install adds the middleware to s: Middleware as receiving middleware,
// and a sending middleware that notices notifications/tools/list_changed
// (the list of tool names is cached). Install before serving.
func (a *Auth) Install(s *mcp.Server) {
	s.AddReceivingMiddleware(a.Middleware())
	s.AddSendingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method == "notifications/tools/list_changed" {
				a.tools.Store(nil)
			}
			return next(ctx, method, req)
		}
	})
}

// PeerFromRequest returns the peer's SPIFFE ID and claims as the
// middleware stored them in the request's TokenInfo (Extra, Scopes), for
// tool handlers; ok is false without one.
func PeerFromRequest(req mcp.Request) (ti *auth.TokenInfo, ok bool) {
	ex := req.GetExtra()
	if ex == nil || ex.TokenInfo == nil {
		return nil, false
	}
	_, ok = ex.TokenInfo.Extra[extraKey].(*identity)
	return ex.TokenInfo, ok
}

// refusal renders a pipeline refusal as the JSON-RPC error of a call.
func refusal(r *verifier.Result) error {
	code := CodeForbidden
	switch r.Outcome {
	case verifier.Unauthenticated:
		code = CodeUnauthenticated
	case verifier.BadRequest, verifier.TooLarge:
		code = jsonrpc.CodeInvalidParams
	case verifier.Unavailable:
		code = CodeUnavailable
	}
	data, _ := json.Marshal(Refusal{Code: r.Code, Rules: r.Decision.RuleStrings(), Scopes: r.MissingScopes})
	return &jsonrpc.Error{Code: int64(code), Message: "agentid: " + r.Code + ": " + r.Message(), Data: data}
}

// decidedMethod reports whether method is decided by the policy one
// request at a time (the others are admitted with the session's peer).
func decidedMethod(method string) bool {
	switch method {
	case policies.MCPToolsCall, policies.MCPPromptsGet, policies.MCPResourceRead, "resources/subscribe", "resources/unsubscribe":
		return true
	}
	return false
}

// Decided reports whether an MCP method is decided by the policy one
// request at a time (tools/call, prompts/get, resources/read, subscribe,
// unsubscribe); the others are admitted for an authenticated peer, and
// the lists are filtered.
func Decided(method string) bool { return decidedMethod(method) }

// RefusalError is the JSON-RPC error (a *jsonrpc.Error) that answers a
// request the pipeline refused: its code (CodeUnauthenticated,
// CodeForbidden, CodeUnavailable, or invalid params), a message naming
// the rule, and Refusal as data.
func RefusalError(r *verifier.Result) error { return refusal(r) }
