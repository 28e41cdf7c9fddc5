package mcpgw_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpgw"
)

const examplePolicy = `
rule "read" {
  effect = "allow"
  peer { scopes_all = ["fs:read"] }
  action {
    mcp { tools = ["read_file"] }
  }
}
`

// ExampleNew puts the gateway in front of an MCP server it does not own
// (here a go-sdk server over Streamable HTTP) and calls it with go-sdk's
// client, as a task holding fs:read: the task sees and calls read_file
// only, and the server gets the gateway's credential, not the task's.
func ExampleNew() {
	ctx := context.Background()
	// The MCP server: knows nothing of agentid; wants its own API key.
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, nil)
	for _, name := range []string{"read_file", "delete_file"} {
		server.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " done"}}}, nil
			})
	}
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer server-key" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mcpHandler.ServeHTTP(w, r)
	}))
	defer upstream.Close()

	// The gateway, deciding with the verifier pipeline.
	ca := testca.New(&testing.T{}, spiffeid.RequireTrustDomainFromString("example.org"), time.Now()) // in production: the SPIRE bundles
	set, _ := policies.LoadFiles([]policies.File{{Name: "fs.hcl", Src: []byte(examplePolicy)}})
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{JWTBundles: ca.JWTBundle(), Audiences: []string{"https://files.example.org/mcp"}}),
		Policy: set,
	}
	u, _ := url.Parse(upstream.URL + "/mcp")
	g, err := mcpgw.New(v, mcpgw.Config{Resource: "https://files.example.org/mcp", Upstream: u,
		UpstreamHeader: "Authorization", UpstreamValue: "Bearer server-key"})
	if err != nil {
		panic(err)
	}
	defer g.Close()
	gateway := httptest.NewServer(g)
	defer gateway.Close()

	// The task's JWT-SVID for the gateway's resource (from the Workload API
	// in production).
	claims := svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Model: "m", Prompt: svid.PromptDigest(nil),
		Scope: []string{"fs:read"}, Principal: "spiffe://example.org/user/alice", Chain: []string{},
		Deadline: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	tok := ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"),
		[]string{"https://files.example.org/mcp"}, claims.JWTClaims())
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: gateway.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		panic(err)
	}
	defer cs.Close()

	tools, _ := cs.ListTools(ctx, nil)
	for _, t := range tools.Tools {
		fmt.Println("listed:", t.Name)
	}
	res, _ := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_file", Arguments: map[string]any{"path": "/srv/a"}})
	fmt.Println(res.Content[0].(*mcp.TextContent).Text)
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_file", Arguments: map[string]any{"path": "/srv/a"}})
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		fmt.Println(je.Code, je.Message)
	}
	// Output:
	// listed: read_file
	// read_file done
	// -32031 agentid: forbidden: no rule allows this request (default deny)
}
