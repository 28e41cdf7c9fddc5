package mcpauth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// MetadataPath is the path of the RFC 9728 metadata on the server's host
// (/.well-known/oauth-protected-resource plus the resource's path).
func (a *Auth) MetadataPath() string { return a.metaPath }

// MetadataURL is the metadata's URL, as WWW-Authenticate names it.
func (a *Auth) MetadataURL() string { return a.metaURL }

// MetadataHandler serves the RFC 9728 metadata (go-sdk's handler, with
// CORS for browser clients).
func (a *Auth) MetadataHandler() http.Handler {
	return auth.ProtectedResourceMetadataHandler(a.Metadata())
}

type tiKey struct{}

// Handler authenticates every HTTP request to the MCP endpoint next
// (typically an mcp.StreamableHTTPHandler) through the pipeline, with its
// TLS client certificate (SPIFFE mTLS, verifier.ServerTLSConfig) or else
// an "Authorization: Bearer <JWT-SVID>" whose audience is the resource.
// It answers
//   - 401 with WWW-Authenticate: Bearer resource_metadata=… (and
//     error="invalid_token" for a credential that was refused) when the
//     peer is not authenticated;
//   - 400 with a JSON-RPC error for a POST body that is not exactly one
//     JSON-RPC message read strictly (duplicate or case-variant keys,
//     batches, Mcp-Method/Mcp-Name headers that disagree with the body:
//     see verifier.ParseMCP), 413 over verifier.MaxMCPBody;
//   - 403 with WWW-Authenticate: Bearer error="insufficient_scope",
//     scope=… when a JWT-SVID peer's tools/call, prompts/get or
//     resources/read is denied and the policy says which scopes would
//     allow it.
//
// Otherwise the request goes on with the peer's auth.TokenInfo (scopes,
// SPIFFE ID as UserID, claims in Extra); a call decided here is not
// decided again by the middleware. For an mTLS peer without a bearer
// token the request next sees carries "Authorization: Bearer
// agentid-mtls" (go-sdk takes TokenInfo from auth.RequireBearerToken only).
func (a *Auth) Handler(next http.Handler) http.Handler {
	inner := auth.RequireBearerToken(func(_ context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		if ti, ok := r.Context().Value(tiKey{}).(*auth.TokenInfo); ok {
			return ti, nil
		}
		return nil, auth.ErrInvalidToken
	}, nil)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		cred := verifier.HTTPCredential(r)
		q := verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource, Request: requestOf(r)}
		id := &identity{cred: cred, request: q.Request}
		var res verifier.Result
		decided := false
		if r.Method == http.MethodPost {
			body, err := io.ReadAll(io.LimitReader(r.Body, verifier.MaxMCPBody+1))
			r.Body.Close()
			if err != nil {
				http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			m, perr := verifier.ParseMCP(body, r.Header)
			switch {
			case perr != nil: // refused and audited by the pipeline, as the other front-ends do
				q.Action, q.MCP, q.Body = verifier.Action{Kind: policies.KindHTTP, Method: r.Method, Path: "/"}, true, body
				res, decided = a.v.Decide(ctx, &q), true
			case decidedMethod(m.Method) && (m.Method != policies.MCPToolsCall || a.knownTool(m.Name)):
				q.Action, q.WantScopes = m.Action(""), cred.Kind == verifier.CredentialJWT
				res, decided = a.v.Decide(ctx, &q), true
				res.MCPID = m.ID
			}
		}
		if !decided {
			res = a.v.Authenticate(ctx, &q)
		}
		if a.writeHTTPRefusal(w, &res, cred) {
			return
		}
		if decided {
			id.decided = &res
		}
		if r.Method == http.MethodGet || r.Method == http.MethodPost {
			// The GET stream of the server's messages, and a call's POST
			// (the tool running, its result and what the server sends on
			// the call's stream meanwhile: progress, sampling,
			// elicitation): held to the peer for as long as they last —
			// each write re-checks, an idle one is re-checked every
			// StreamRecheckInterval, and at a refusal their context ends.
			if !decided {
				q.Action = verifier.Action{Kind: policies.KindHTTP, Method: r.Method, Path: r.URL.Path}
			}
			gctx, check, stop := a.v.Guard(ctx, &q, res.Peer.Expires(), nil)
			defer stop()
			ctx, w = gctx, &guardedWriter{ResponseWriter: w, check: check}
		}
		r = r.WithContext(context.WithValue(ctx, tiKey{}, tokenInfo(&res.Peer, id)))
		if cred.Kind != verifier.CredentialJWT {
			r.Header = r.Header.Clone()
			r.Header.Set("Authorization", "Bearer agentid-mtls")
		}
		inner.ServeHTTP(w, r)
	})
}

// guardedWriter re-checks the stream's peer before each write: a message
// the server sends after the peer's refusal does not reach it.
type guardedWriter struct {
	http.ResponseWriter
	check func() error
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	if err := g.check(); err != nil {
		return 0, err
	}
	return g.ResponseWriter.Write(p)
}

func (g *guardedWriter) Flush() { http.NewResponseController(g.ResponseWriter).Flush() }

// Unwrap lets http.ResponseController reach the server's writer.
func (g *guardedWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// WriteRefusal answers an HTTP request to the MCP endpoint that the
// pipeline refused (res is not allowed), as Handler does, for front-ends
// that decide the message themselves (the gateway, verifier/mcpgw):
//   - 401 with WWW-Authenticate (resource_metadata, and
//     error="invalid_token" for a refused credential) when the peer is not
//     authenticated;
//   - 400 or 413 with a JSON-RPC error for a message that cannot be
//     decided as sent;
//   - 403 with error="insufficient_scope" and the scopes when a JWT-SVID
//     peer is denied and the policy says which scopes would allow it;
//   - otherwise (a policy denial, an unrecordable decision) 200 with the
//     JSON-RPC error naming the rule: an MCP error result, not a
//     transport failure.
func (a *Auth) WriteRefusal(w http.ResponseWriter, res *verifier.Result, cred verifier.Credential) {
	if !a.writeHTTPRefusal(w, res, cred) {
		writeJSONRPCError(w, http.StatusOK, res.MCPID, refusal(res))
	}
}

// writeHTTPRefusal answers the refusals that HTTP carries (401, 400,
// 413, 403 insufficient_scope); false for the others, which are JSON-RPC
// errors of the call.
func (a *Auth) writeHTTPRefusal(w http.ResponseWriter, res *verifier.Result, cred verifier.Credential) bool {
	switch {
	case !res.Authenticated:
		a.challenge(w, res, cred)
	case res.Outcome == verifier.BadRequest || res.Outcome == verifier.TooLarge:
		writeJSONRPCError(w, res.HTTPStatus(), res.MCPID, refusal(res))
	case res.Outcome == verifier.Forbidden && len(res.MissingScopes) > 0 && cred.Kind == verifier.CredentialJWT:
		w.Header().Set("WWW-Authenticate", a.bearerChallenge("insufficient_scope", res.Message(), res.MissingScopes))
		writeJSONRPCError(w, http.StatusForbidden, res.MCPID, refusal(res))
	default:
		return false
	}
	return true
}

// HTTPRequest is what conditions see of an HTTP request (its headers and
// source address).
func HTTPRequest(r *http.Request) verifier.Request { return requestOf(r) }

// challenge answers a peer that is not authenticated: 401 with the
// resource metadata, and error="invalid_token" when a credential was sent.
func (a *Auth) challenge(w http.ResponseWriter, res *verifier.Result, cred verifier.Credential) {
	errCode := ""
	if cred.Kind != verifier.CredentialNone {
		errCode = "invalid_token"
	}
	w.Header().Set("WWW-Authenticate", a.bearerChallenge(errCode, res.Message(), nil))
	w.Header().Set(verifier.HeaderDenyReason, res.Code)
	http.Error(w, "agentid: "+res.Code+": "+res.Message(), http.StatusUnauthorized)
}

// bearerChallenge is an RFC 6750 challenge with RFC 9728's
// resource_metadata.
func (a *Auth) bearerChallenge(errCode, desc string, scopes []string) string {
	var b strings.Builder
	b.WriteString("Bearer resource_metadata=" + strconv.Quote(a.metaURL))
	if errCode != "" {
		b.WriteString(", error=" + strconv.Quote(errCode))
	}
	if len(scopes) > 0 {
		b.WriteString(", scope=" + strconv.Quote(strings.Join(scopes, " ")))
	}
	if errCode != "" && desc != "" {
		b.WriteString(", error_description=" + strconv.Quote(challengeText(desc)))
	}
	return b.String()
}

// challengeText keeps what an auth-param's quoted string may hold
// (RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E).
func challengeText(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		} else {
			b.WriteByte(' ')
		}
		if b.Len() >= 256 {
			break
		}
	}
	return b.String()
}

func writeJSONRPCError(w http.ResponseWriter, status int, id []byte, err error) {
	if len(id) == 0 {
		id = []byte("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "error": err})
}
