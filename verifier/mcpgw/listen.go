package mcpgw

import (
	"context"
	"net/http"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// methodListen opens a 2026-07-28 notification stream; its
// resourceSubscriptions replace resources/subscribe.
const methodListen = verifier.MCPMethodListen

// decideListen decides a subscriptions/listen as resources/subscribe of
// each URI in params.notifications.resourceSubscriptions, in order; the
// first one refused refuses the request (each decision is audited). A
// listen without resource subscriptions is admitted for an authenticated
// peer, like the other undecided methods. body was read by
// verifier.ParseMCP (no duplicate or case-variant keys at any depth).
func (g *Gateway) decideListen(ctx context.Context, r *http.Request, q *verifier.Query, m *verifier.MCPMessage, body []byte) verifier.Result {
	uris, rerr := verifier.MCPListenURIs(body)
	if rerr == nil && len(uris) == 0 {
		res := g.v.Authenticate(ctx, q)
		res.MCPID = m.ID
		return res
	}
	q.WantScopes = q.Credential.Kind == verifier.CredentialJWT
	if rerr != nil {
		q.Action, q.Reject = verifier.Action{Kind: policies.KindMCP, Method: methodListen}, rerr
		res := g.v.Decide(ctx, q)
		res.MCPID = m.ID
		return res
	}
	var res verifier.Result
	for _, uri := range uris {
		q.Action = verifier.Action{Kind: policies.KindMCP, Method: "resources/subscribe", Name: uri}
		res = g.v.Decide(ctx, q)
		res.MCPID = m.ID
		if !res.Allowed() {
			break
		}
	}
	return res
}
