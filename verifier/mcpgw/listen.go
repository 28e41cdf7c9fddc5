package mcpgw

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// methodListen opens a 2026-07-28 notification stream; its
// resourceSubscriptions replace resources/subscribe.
const methodListen = "subscriptions/listen"

// maxListenURIs bounds the resource subscriptions of one
// subscriptions/listen (each is a decision and an audit record).
const maxListenURIs = 256

// decideListen decides a subscriptions/listen as resources/subscribe of
// each URI in params.notifications.resourceSubscriptions, in order; the
// first one refused refuses the request (each decision is audited). A
// listen without resource subscriptions is admitted for an authenticated
// peer, like the other undecided methods. body was read by
// verifier.ParseMCP (no duplicate or case-variant keys at any depth).
func (g *Gateway) decideListen(ctx context.Context, r *http.Request, q *verifier.Query, m *verifier.MCPMessage, body []byte) verifier.Result {
	uris, rerr := listenURIs(body)
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

// listenURIs is params.notifications.resourceSubscriptions of a
// subscriptions/listen.
func listenURIs(body []byte) ([]string, *verifier.InputError) {
	bad := func(format string, args ...any) ([]string, *verifier.InputError) {
		return nil, &verifier.InputError{What: "MCP subscriptions", Detail: fmt.Sprintf(format, args...)}
	}
	var env struct {
		Params struct {
			Notifications *struct {
				ResourceSubscriptions json.RawMessage `json:"resourceSubscriptions"`
			} `json:"notifications"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil {
		return bad(`params."notifications" must be an object`)
	}
	n := env.Params.Notifications
	if n == nil || len(n.ResourceSubscriptions) == 0 || string(n.ResourceSubscriptions) == "null" {
		return nil, nil
	}
	var uris []string
	if json.Unmarshal(n.ResourceSubscriptions, &uris) != nil {
		return bad(`params.notifications."resourceSubscriptions" must be an array of URIs`)
	}
	if len(uris) > maxListenURIs {
		return bad("more than %d resource subscriptions in one subscriptions/listen", maxListenURIs)
	}
	for _, u := range uris {
		if u == "" || len(u) > verifier.MaxNameLen {
			return bad("a resource subscription must be a URI of 1 to %d bytes", verifier.MaxNameLen)
		}
	}
	return uris, nil
}
