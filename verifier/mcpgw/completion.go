package mcpgw

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// methodComplete asks the server for completions of a prompt's argument
// or of a resource template's variable.
const methodComplete = "completion/complete"

// decideCompletion decides a completion/complete as what it completes
// (completionAction): a task cannot learn the argument values of a
// prompt it may not get, or the names under a resource it may not read.
// The audit record names that action (prompts/get NAME or
// resources/read URI-TEMPLATE); a ref that cannot be read is refused as
// bad_request (action completion/complete).
func (g *Gateway) decideCompletion(ctx context.Context, r *http.Request, q *verifier.Query, m *verifier.MCPMessage, body []byte) verifier.Result {
	a, rerr := completionAction(body)
	q.Action, q.WantScopes = a, q.Credential.Kind == verifier.CredentialJWT
	if rerr != nil {
		q.Action, q.Reject = verifier.Action{Kind: policies.KindMCP, Method: methodComplete}, rerr
	}
	res := g.v.Decide(ctx, q)
	res.MCPID = m.ID
	return res
}

// completionAction is the action a completion/complete stands for: a
// "ref/prompt" is prompts/get of its name, a "ref/resource" resources/read
// of its URI or URI template (matched by the policy's resources patterns
// as it is written, e.g. "file:///srv/**" covers
// "file:///srv/{path}"). body was read by verifier.ParseMCP, which
// refuses duplicate and case-variant keys at every depth, so the ref read
// here is the one every server reads.
func completionAction(body []byte) (verifier.Action, *verifier.InputError) {
	bad := func(detail string) (verifier.Action, *verifier.InputError) {
		return verifier.Action{}, &verifier.InputError{What: "MCP completion", Detail: detail}
	}
	var env struct {
		Params struct {
			Ref *struct {
				Type string  `json:"type"`
				Name *string `json:"name"`
				URI  *string `json:"uri"`
			} `json:"ref"`
		} `json:"params"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return bad(`params."ref" must be an object with "type" and "name" or "uri"`)
	}
	ref := env.Params.Ref
	if ref == nil {
		return bad(`params."ref" is required`)
	}
	val, method := ref.Name, policies.MCPPromptsGet
	switch ref.Type {
	case "ref/prompt":
	case "ref/resource":
		val, method = ref.URI, policies.MCPResourceRead
	default:
		return bad(`params.ref."type" must be "ref/prompt" or "ref/resource"`)
	}
	if val == nil || *val == "" {
		return bad("params.ref of type " + ref.Type + ` needs a non-empty "name" (prompt) or "uri" (resource)`)
	}
	if len(*val) > verifier.MaxNameLen {
		return bad("params.ref names more than the gateway reads")
	}
	return verifier.Action{Kind: policies.KindMCP, Method: method, Name: *val}, nil
}
