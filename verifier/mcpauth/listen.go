package mcpauth

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// methodListen is SEP-2575's subscriptions/listen (protocol 2026-07-28),
// which replaced resources/subscribe: go-sdk's ClientSession.Subscribe
// sends it from that version on.
const methodListen = verifier.MCPMethodListen

// listen decides a subscriptions/listen as resources/subscribe of each URI
// in params.notifications.resourceSubscriptions, in order (each decision
// audited); the first one refused refuses the request. A listen without
// resource subscriptions is admitted for an authenticated peer, like the
// other undecided methods.
func (a *Auth) listen(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler) (mcp.Result, error) {
	var uris []string
	if p, ok := req.GetParams().(*mcp.SubscriptionsListenParams); ok && p != nil && p.Notifications != nil {
		uris = p.Notifications.ResourceSubscriptions
	}
	if len(uris) == 0 {
		if err := a.admit(ctx, req); err != nil {
			return nil, err
		}
		return next(ctx, method, req)
	}
	_, cred := a.identity(ctx, req)
	q := verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource, Request: a.requestOf(ctx, req)}
	if len(uris) > verifier.MaxListenURIs {
		q.Action = verifier.Action{Kind: policies.KindMCP, Method: method}
		q.Reject = &verifier.InputError{What: "MCP subscriptions/listen", Detail: fmt.Sprintf("more than %d resource subscriptions", verifier.MaxListenURIs)}
		r := a.v.Decide(ctx, &q)
		return nil, refusal(&r)
	}
	for _, uri := range uris {
		q.Action = verifier.Action{Kind: policies.KindMCP, Method: "resources/subscribe", Name: uri}
		q.Reject = nil // an empty or non-canonical URI is refused by the pipeline (verifier.CheckResourceURI)
		r := a.v.Decide(ctx, &q)
		if !r.Allowed() {
			return nil, refusal(&r)
		}
	}
	return next(ctx, method, req)
}
