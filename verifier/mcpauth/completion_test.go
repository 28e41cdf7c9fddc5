package mcpauth_test

import (
	"context"
	"slices"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// TestCompletionDecided: in a go-sdk server using mcpauth,
// completion/complete is decided as what it completes — a ref/prompt as
// prompts/get of the prompt, a ref/resource as resources/read of the URI
// template as written — and resources/templates/list is filtered the same
// way, so a task learns no argument values of a prompt, or names below a
// resource, it may not use.
func TestCompletionDecided(t *testing.T) {
	f := newFixture(t)
	var reached []string
	srv := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			reached = append(reached, req.Params.Ref.Type+" "+req.Params.Ref.Name+req.Params.Ref.URI)
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"secret"}}}, nil
		},
	})
	srv.AddPrompt(&mcp.Prompt{Name: "exfiltrate", Arguments: []*mcp.PromptArgument{{Name: "target"}}}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{}, nil
	})
	for _, tpl := range []string{"file:///srv/shared/{path}", "file:///etc/{name}"} {
		srv.AddResourceTemplate(&mcp.ResourceTemplate{Name: tpl, URITemplate: tpl}, readResource)
	}
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	a, err := mcpauth.New(f.v, mcpauth.Options{Resource: resource,
		Credential: func(context.Context, mcp.Request) (verifier.Credential, bool) { return jwtCred(tok), true }})
	if err != nil {
		t.Fatal(err)
	}
	a.Install(srv)
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })

	complete := func(ref *mcp.CompleteReference) error {
		_, err := cs.Complete(ctx, &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: "target", Value: "x"}})
		return err
	}
	if err := complete(&mcp.CompleteReference{Type: "ref/resource", URI: "file:///srv/shared/{path}"}); err != nil {
		t.Fatalf("completing a readable template: %v", err)
	}
	wantRefusal(t, complete(&mcp.CompleteReference{Type: "ref/resource", URI: "file:///etc/{name}"}), mcpauth.CodeForbidden, "forbidden", "default deny")
	wantRefusal(t, complete(&mcp.CompleteReference{Type: "ref/prompt", Name: "exfiltrate"}), mcpauth.CodeForbidden, "forbidden", "default deny")
	if want := []string{"ref/resource file:///srv/shared/{path}"}; !slices.Equal(reached, want) {
		t.Fatalf("completions that reached the handler: %q, want %q", reached, want)
	}
	tl, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tl.ResourceTemplates) != 1 || tl.ResourceTemplates[0].URITemplate != "file:///srv/shared/{path}" {
		t.Fatalf("templates listed: %+v", tl.ResourceTemplates)
	}
	n := 0
	for _, r := range f.records(t) {
		if r.Decision == "deny" && (r.Action.Method == "resources/read" && r.Action.Name == "file:///etc/{name}" || r.Action.Method == "prompts/get" && r.Action.Name == "exfiltrate") {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d audited completion refusals, want 2", n)
	}
}
