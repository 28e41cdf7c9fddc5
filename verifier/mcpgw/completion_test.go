package mcpgw_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier/mcpauth"
	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayCompletionDecided: completion/complete is decided as what it
// completes — a ref/prompt as prompts/get of that prompt, a ref/resource
// as resources/read of the URI (template) — so that a task cannot learn
// argument values of a prompt or names under a resource it may not use;
// a ref the gateway cannot read is refused before the upstream sees it.
// resources/templates/list is filtered the same way: a template is
// listed when reading its URI template as a URI would be allowed.
func TestGatewayCompletionDecided(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var reached []string
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			mu.Lock()
			reached = append(reached, req.Params.Ref.Type+" "+req.Params.Ref.Name+req.Params.Ref.URI)
			mu.Unlock()
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{"secret-value"}}}, nil
		},
	})
	for _, name := range []string{"summarize", "exfiltrate"} {
		s.AddPrompt(&mcp.Prompt{Name: name, Arguments: []*mcp.PromptArgument{{Name: "target"}}}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{}, nil
		})
	}
	for _, tpl := range []string{"file:///srv/shared/{path}", "file:///etc/{name}"} {
		s.AddResourceTemplate(&mcp.ResourceTemplate{Name: tpl, URITemplate: tpl}, readResource)
	}
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(up.Close)
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	cs := connect(t, gw.URL, tok, nil)
	ctx := context.Background()

	complete := func(ref *mcp.CompleteReference) (*mcp.CompleteResult, error) {
		return cs.Complete(ctx, &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: "target", Value: "x"}})
	}
	if res, err := complete(&mcp.CompleteReference{Type: "ref/prompt", Name: "summarize"}); err != nil || !slices.Equal(res.Completion.Values, []string{"secret-value"}) {
		t.Fatalf("completing an allowed prompt: %+v %v", res, err)
	}
	_, err := complete(&mcp.CompleteReference{Type: "ref/prompt", Name: "exfiltrate"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")
	if _, err := complete(&mcp.CompleteReference{Type: "ref/resource", URI: "file:///srv/shared/{path}"}); err != nil {
		t.Fatalf("completing a readable template: %v", err)
	}
	_, err = complete(&mcp.CompleteReference{Type: "ref/resource", URI: "file:///etc/{name}"})
	wantRefusal(t, err, mcpauth.CodeForbidden, "forbidden", "default deny")

	// refs that cannot be decided never reach the upstream
	sid := ""
	resp, _ := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid = resp.Header.Get("Mcp-Session-Id")
	rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for _, params := range []string{
		`{"ref":{"type":"ref/tool","name":"summarize"},"argument":{"name":"target","value":"x"}}`,
		`{"ref":{"type":"ref/prompt"},"argument":{"name":"target","value":"x"}}`,
		`{"ref":{"type":"ref/resource","uri":""},"argument":{"name":"target","value":"x"}}`,
		`{"argument":{"name":"target","value":"x"}}`,
		`{"ref":"summarize","argument":{"name":"target","value":"x"}}`,
	} {
		resp, body := rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","id":9,"method":"completion/complete","params":`+params+`}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"code":-32602`) || !strings.Contains(body, "bad_request") {
			t.Errorf("completion with %s: %d %s", params, resp.StatusCode, body)
		}
	}
	mu.Lock()
	got := slices.Clone(reached)
	mu.Unlock()
	if want := []string{"ref/prompt summarize", "ref/resource file:///srv/shared/{path}"}; !slices.Equal(got, want) {
		t.Fatalf("completions that reached the upstream: %q, want %q", got, want)
	}

	tl, err := cs.ListResourceTemplates(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tpls []string
	for _, tp := range tl.ResourceTemplates {
		tpls = append(tpls, tp.URITemplate)
	}
	if !slices.Equal(tpls, []string{"file:///srv/shared/{path}"}) {
		t.Fatalf("templates listed: %q", tpls)
	}

	var denied, bad int
	for _, r := range f.records(t) {
		switch {
		case r.Decision == "deny" && (r.Action.Name == "exfiltrate" && r.Action.Method == "prompts/get" || r.Action.Name == "file:///etc/{name}" && r.Action.Method == "resources/read"):
			denied++
		case r.Decision == "deny" && r.Action.Method == "completion/complete" && strings.Contains(r.Reason, "bad_request"):
			bad++
		}
	}
	if denied != 2 || bad != 5 {
		t.Fatalf("audit: %d denied completions, %d refused refs; want 2 and 5", denied, bad)
	}
}
