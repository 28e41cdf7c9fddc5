package mcpauth

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
)

// methodComplete asks for completions of a prompt's argument or a
// resource template's variable.
const methodComplete = "completion/complete"

// complete decides a completion/complete as the prompts/get or
// resources/read it completes (audited as that action; a ref that names
// neither is refused as bad_request), so a task cannot learn the argument
// values of a prompt it may not get, or names below a resource it may not
// read.
func (a *Auth) complete(ctx context.Context, method string, req mcp.Request, next mcp.MethodHandler) (mcp.Result, error) {
	act := verifier.Action{Kind: policies.KindMCP, Method: method}
	var reject *verifier.InputError
	p, _ := req.GetParams().(*mcp.CompleteParams)
	switch {
	case p == nil || p.Ref == nil:
		reject = &verifier.InputError{What: "MCP completion", Detail: `params."ref" is required`}
	case p.Ref.Type == "ref/prompt" && p.Ref.Name != "":
		act.Method, act.Name = policies.MCPPromptsGet, p.Ref.Name
	case p.Ref.Type == "ref/resource" && p.Ref.URI != "":
		act.Method, act.Name = policies.MCPResourceRead, p.Ref.URI
	default:
		reject = &verifier.InputError{What: "MCP completion", Detail: `params.ref must be a "ref/prompt" with a name or a "ref/resource" with a uri`}
	}
	_, cred := a.identity(ctx, req)
	q := verifier.Query{Frontend: verifier.FrontendMCP, Credential: cred, Audience: a.opts.Resource,
		Action: act, Reject: reject, Request: a.requestOf(ctx, req)}
	r := a.v.Decide(ctx, &q)
	if !r.Allowed() {
		return nil, refusal(&r)
	}
	return next(ctx, method, req)
}
