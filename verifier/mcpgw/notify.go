package mcpgw

import (
	"context"
	"encoding/json"

	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// FrontendNotification is the front-end name (audit records, metrics) of
// the gateway's decisions on the upstream's
// notifications/resources/updated: the update is decided as the agent's
// resources/read of its URI, and reaches the agent only when that would
// be allowed.
const FrontendNotification = "mcp_gateway_notification"

// methodResourceUpdated is the notification naming a resource that
// changed (on a GET stream, a subscriptions/listen stream from
// 2026-07-28, or a call's SSE stream).
const methodResourceUpdated = "notifications/resources/updated"

// SuppressedNotifications is how many of the upstream's messages to the
// agent the gateway kept from it: updates of resources the task may not
// read, and requests or notifications that case-insensitive and
// case-sensitive clients would read differently.
func (g *Gateway) SuppressedNotifications() int64 { return g.suppressed.Load() }

// passServerMessage reports whether data, a request or notification
// from the upstream to the agent (messageKind: request), may reach it.
// Updates of a resource are decided as reading it (audited, front-end
// FrontendNotification); everything else passes — list_changed (the
// lists the agent then asks for are filtered), progress and logging
// (tied to the task's own requests in its own session), the server's
// requests (sampling, elicitation, roots: the agent's client decides
// them) — unless its envelope has keys that clients read differently
// ("method" and "Method"), which is dropped and audited like a malformed
// update.
func (g *Gateway) passServerMessage(ctx context.Context, x *exchange, data []byte) bool {
	method, update, clean := serverMethod(data)
	if !update && clean {
		return true
	}
	q := &verifier.Query{Frontend: FrontendNotification, Credential: x.q.Credential, Audience: x.q.Audience, Request: x.q.Request,
		Action: verifier.Action{Kind: policies.KindMCP, Method: method}}
	if update {
		q.Action.Method = methodResourceUpdated
	}
	switch uri, err := updatedURI(data); {
	case !clean:
		q.Reject = &verifier.InputError{What: "MCP message from the upstream", Detail: "its envelope has keys that case-insensitive clients read as another key"}
	case err != nil:
		q.Reject = err
	default:
		q.Action = verifier.Action{Kind: policies.KindMCP, Method: policies.MCPResourceRead, Name: uri}
	}
	res := g.v.Decide(ctx, q)
	if res.Allowed() {
		return true
	}
	g.suppressed.Add(1)
	g.log.Info("mcp gateway: kept a message of the upstream from the agent", "method", q.Action.Method, "name", q.Action.Name, "outcome", res.Code, "reason", res.Decision.Reason)
	return false
}

// serverMethod reads a message's method as a case-sensitive client does
// (the exact key "method"); update reports whether any key a
// case-insensitive client takes for "method" names
// notifications/resources/updated; clean is false when the envelope has
// such variants of its keys at all.
func serverMethod(data []byte) (method string, update, clean bool) {
	clean = true
	seen := map[string]bool{}
	eachTopLevel(data, func(k []byte, s, e int) {
		var key string
		if json.Unmarshal(k, &key) != nil {
			clean = false
			return
		}
		f := strictjson.Fold(key)
		if seen[f] {
			clean = false
		}
		seen[f] = true
		if f != strictjson.Fold("method") {
			return
		}
		var v string
		if data[s] == '"' && json.Unmarshal(data[s:e], &v) == nil {
			update = update || v == methodResourceUpdated
			if key == "method" {
				method = v
			}
		}
	})
	return method, update, clean
}

// updatedURI is the params.uri of a notifications/resources/updated,
// read strictly (verifier.ParseMCP: no duplicate or case-variant keys,
// so every client reads the same URI).
func updatedURI(data []byte) (string, *verifier.InputError) {
	bad := func(detail string) (string, *verifier.InputError) {
		return "", &verifier.InputError{What: "MCP notification", Detail: methodResourceUpdated + " from the upstream: " + detail}
	}
	m, err := verifier.ParseMCP(data, nil)
	if err != nil {
		return bad(err.Error())
	}
	if m.Method != methodResourceUpdated || len(m.ID) > 0 {
		return bad("not a notification")
	}
	var env struct {
		Params struct {
			URI *string `json:"uri"`
		} `json:"params"`
	}
	if json.Unmarshal(data, &env) != nil || env.Params.URI == nil || *env.Params.URI == "" {
		return bad(`params."uri" must be a non-empty string`)
	}
	if len(*env.Params.URI) > verifier.MaxNameLen {
		return bad("the URI is too long")
	}
	return *env.Params.URI, nil
}
