package mcpauth

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// Middleware is the receiving middleware (mcp.Server.AddReceivingMiddleware;
// Install adds it). It
//   - decides every tools/call (action {mcp, tools/call, tool name, the
//     arguments}), prompts/get (the prompt's name) and resources/read,
//     resources/subscribe and resources/unsubscribe (the URI) through the
//     pipeline, and answers a refusal with a JSON-RPC error naming the rule;
//     a tool the server does not have, and arguments that are not one JSON
//     object (or have duplicate or case-variant keys), are refused as
//     bad_request, audited like every decision;
//   - decides subscriptions/listen (protocol 2026-07-28) as
//     resources/subscribe of each URI it subscribes to;
//   - decides completion/complete as what it completes: a ref/prompt as
//     prompts/get of the prompt, a ref/resource as resources/read of its URI
//     (template) as written;
//   - filters tools/list, prompts/list, resources/list and
//     resources/templates/list to the entries the policy could allow the
//     peer (with some arguments), so the model never sees a tool its task
//     cannot call;
//   - admits the other methods (initialize, ping, notifications, …) for an
//     authenticated peer.
func (a *Auth) Middleware() mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch method {
			case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
				return a.list(ctx, method, req, next)
			case methodComplete:
				return a.complete(ctx, method, req, next) // completion.go
			case methodListen:
				return a.listen(ctx, method, req, next) // listen.go
			}
			if !decidedMethod(method) {
				if err := a.admit(ctx, req); err != nil {
					return nil, err
				}
				return next(ctx, method, req)
			}
			act, reject := actionOf(method, req)
			id, cred := a.identity(ctx, req)
			if id != nil && id.decided != nil && id.decided.Action == act {
				r := id.decided // Handler decided this very message
				id.decided = nil
				if !r.Allowed() {
					return nil, refusal(r)
				}
				return next(ctx, method, req)
			}
			if reject == nil && method == policies.MCPToolsCall {
				reject = a.checkTool(ctx, req, act.Name, next)
			}
			q := verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource,
				Action: act, Reject: reject, Request: a.requestOf(ctx, req)}
			r := a.v.Decide(ctx, &q)
			if !r.Allowed() {
				return nil, refusal(&r)
			}
			return next(ctx, method, req)
		}
	}
}

// actionOf is the action of a decided request; reject says why it cannot
// be decided as sent.
func actionOf(method string, req mcp.Request) (verifier.Action, *verifier.InputError) {
	a := verifier.Action{Kind: policies.KindMCP, Method: method}
	switch p := req.GetParams().(type) {
	case *mcp.CallToolParamsRaw:
		a.Name = p.Name
		if args := string(p.Arguments); args != "" && args != "null" {
			a.Arguments = args
		}
	case *mcp.GetPromptParams:
		a.Name = p.Name
	case *mcp.ReadResourceParams:
		a.Name = p.URI
	case *mcp.SubscribeParams:
		a.Name = p.URI
	case *mcp.UnsubscribeParams:
		a.Name = p.URI
	default:
		return a, &verifier.InputError{What: "MCP params", Detail: fmt.Sprintf("unexpected %T for %s", p, method)}
	}
	if a.Name == "" {
		return a, &verifier.InputError{What: "MCP params", Detail: "no name or URI for " + method}
	}
	return a, nil
}

// identity finds the request's credential: the TokenInfo that Handler or
// VerifyToken made, else Options.Credential.
func (a *Auth) identity(ctx context.Context, req mcp.Request) (*identity, verifier.Credential) {
	if ex := req.GetExtra(); ex != nil && ex.TokenInfo != nil {
		if id, ok := ex.TokenInfo.Extra[extraKey].(*identity); ok {
			return id, id.cred
		}
	}
	if a.opts.Credential != nil {
		if c, ok := a.opts.Credential(ctx, req); ok {
			return nil, c
		}
	}
	return nil, verifier.Credential{}
}

// admit authenticates the peer of a request the policy does not decide.
// A request through Handler or VerifyToken was authenticated with its
// HTTP request; others are authenticated here (cached per credential).
func (a *Auth) admit(ctx context.Context, req mcp.Request) error {
	id, cred := a.identity(ctx, req)
	if id != nil {
		return nil
	}
	r := a.v.Authenticate(ctx, &verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource, Request: a.requestOf(ctx, req)})
	if !r.Authenticated {
		return refusal(&r)
	}
	return nil
}

// list filters a list result to what the peer may use.
func (a *Auth) list(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler) (mcp.Result, error) {
	res, err := next(ctx, method, req)
	if err != nil || res == nil {
		return res, err
	}
	_, cred := a.identity(ctx, req)
	q := verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource, Request: a.requestOf(ctx, req)}
	switch lr := res.(type) {
	case *mcp.ListToolsResult:
		a.noteTools(lr)
		out := *lr
		out.Tools, err = visible(ctx, a, &q, lr.Tools, policies.MCPToolsCall, func(t *mcp.Tool) string { return t.Name })
		return orRefusal(&out, err)
	case *mcp.ListPromptsResult:
		out := *lr
		out.Prompts, err = visible(ctx, a, &q, lr.Prompts, policies.MCPPromptsGet, func(p *mcp.Prompt) string { return p.Name })
		return orRefusal(&out, err)
	case *mcp.ListResourcesResult:
		out := *lr
		out.Resources, err = visible(ctx, a, &q, lr.Resources, policies.MCPResourceRead, func(x *mcp.Resource) string { return x.URI })
		return orRefusal(&out, err)
	case *mcp.ListResourceTemplatesResult: // each template as reading its URI template as written
		out := *lr
		out.ResourceTemplates, err = visible(ctx, a, &q, lr.ResourceTemplates, policies.MCPResourceRead, func(x *mcp.ResourceTemplate) string { return x.URITemplate })
		return orRefusal(&out, err)
	}
	return res, nil
}

// visible is the items of a list that the peer could use (as the MCP
// method named, each by name): the peer refused, the refusal.
func visible[T any](ctx context.Context, a *Auth, q *verifier.Query, items []T, method string, name func(T) string) ([]T, error) {
	acts := make([]verifier.Action, len(items))
	for i, it := range items {
		acts[i] = verifier.Action{Kind: policies.KindMCP, Method: method, Name: name(it)}
	}
	vis, r := a.v.Visible(ctx, q, acts)
	if vis == nil {
		return nil, refusal(&r)
	}
	return keep(items, vis), nil
}

// orRefusal is the filtered list, or nothing with the peer's refusal.
func orRefusal(out mcp.Result, err error) (mcp.Result, error) {
	if err != nil {
		return nil, err
	}
	return out, nil
}

func keep[T any](xs []T, vis []bool) []T {
	out := make([]T, 0, len(xs))
	for i, x := range xs {
		if vis[i] {
			out = append(out, x)
		}
	}
	return out
}

// noteTools remembers the tool names of a complete (single-page) list.
func (a *Auth) noteTools(lr *mcp.ListToolsResult) {
	if lr.NextCursor != "" {
		return
	}
	m := make(map[string]struct{}, len(lr.Tools))
	for _, t := range lr.Tools {
		m[t.Name] = struct{}{}
	}
	a.tools.Store(&m)
}

// checkTool refuses a tool the server does not have. The names are cached
// (Install drops them on notifications/tools/list_changed); a name not in
// the cache is looked up again in the server's list before it is refused.
func (a *Auth) checkTool(ctx context.Context, req mcp.Request, name string, next mcp.MethodHandler) *verifier.InputError {
	if m := a.tools.Load(); m != nil {
		if _, ok := (*m)[name]; ok {
			return nil
		}
	}
	ss, ok := req.GetSession().(*mcp.ServerSession)
	if !ok {
		return nil // not a server request: go-sdk's own check stays
	}
	a.toolsRefresh.Lock()
	defer a.toolsRefresh.Unlock()
	names := map[string]struct{}{}
	params := &mcp.ListToolsParams{}
	for range 1000 { // pages
		res, err := next(ctx, "tools/list", &mcp.ListToolsRequest{Session: ss, Params: params, Extra: req.GetExtra()})
		if err != nil {
			return nil // cannot tell: go-sdk refuses unknown tools itself
		}
		lr, ok := res.(*mcp.ListToolsResult)
		if !ok {
			return nil
		}
		for _, t := range lr.Tools {
			names[t.Name] = struct{}{}
		}
		if lr.NextCursor == "" {
			break
		}
		params = &mcp.ListToolsParams{Cursor: lr.NextCursor}
	}
	a.tools.Store(&names)
	if _, ok := names[name]; ok {
		return nil
	}
	return &verifier.InputError{What: "MCP tool", Detail: fmt.Sprintf("%q is not a tool of this server", name)}
}

// KnownTool reports whether name is in the cached list of the server's
// tools (false when the list is not known yet).
func (a *Auth) knownTool(name string) bool {
	m := a.tools.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[name]
	return ok
}

// requestOf is what conditions see of the HTTP request of an MCP request:
// Handler's (headers and source address) when it came through Handler,
// else the headers go-sdk passes on — so that a decision does not depend
// on which of the two decided it.
func (a *Auth) requestOf(ctx context.Context, req mcp.Request) verifier.Request {
	if id, _ := a.identity(ctx, req); id != nil && (id.request.Headers != nil || id.request.Source.IsValid()) {
		return id.request
	}
	return extraRequest(req)
}

// extraRequest is what conditions see of the HTTP request of an MCP
// request (headers), when it came over HTTP.
func extraRequest(req mcp.Request) verifier.Request {
	if ex := req.GetExtra(); ex != nil && ex.Header != nil {
		return verifier.Request{Headers: ex.Header}
	}
	return verifier.Request{}
}

func requestOf(r *http.Request) verifier.Request {
	q := verifier.Request{Headers: r.Header}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		q.Source = ap
	}
	return q
}
