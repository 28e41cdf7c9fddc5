package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The knowledge base and the tickets as MCP tools.
type kbSearchArgs struct {
	Query string `json:"query" jsonschema:"words to look for"`
}

type kbReadArgs struct {
	Doc string `json:"doc" jsonschema:"the document's name, e.g. onboarding"`
}

type ticketArgs struct {
	Title string `json:"title" jsonschema:"the ticket's title"`
}

var kbDocs = map[string]string{
	"onboarding": "Onboarding: ask for an agent task, never for a key.",
	"security":   "Security: every call is decided and recorded.",
}

// runMCP serves the knowledge base and tickets as an MCP server over
// stdin/stdout: the stdio server an agentid-verifier MCP gateway runs as
// its upstream_command and puts behind its checks. It knows nothing of
// its callers: the gateway decides each call.
func runMCP(ctx context.Context) error {
	s := mcp.NewServer(&mcp.Implementation{Name: "kbservice", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "kb_search", Description: "search the knowledge base"},
		func(_ context.Context, _ *mcp.CallToolRequest, a kbSearchArgs) (*mcp.CallToolResult, any, error) {
			var hits []string
			for name, text := range kbDocs {
				if strings.Contains(strings.ToLower(text), strings.ToLower(a.Query)) {
					hits = append(hits, name)
				}
			}
			return text(fmt.Sprintf("%d document(s) match %q: %s", len(hits), a.Query, strings.Join(hits, ", "))), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "kb_read", Description: "read a knowledge-base document"},
		func(_ context.Context, _ *mcp.CallToolRequest, a kbReadArgs) (*mcp.CallToolResult, any, error) {
			doc, ok := kbDocs[a.Doc]
			if !ok {
				return nil, nil, fmt.Errorf("no document %q", a.Doc)
			}
			return text(doc), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "ticket_create", Description: "open a ticket"},
		func(_ context.Context, _ *mcp.CallToolRequest, a ticketArgs) (*mcp.CallToolResult, any, error) {
			return text("ticket opened: " + a.Title), nil, nil
		})
	return s.Run(ctx, &mcp.StdioTransport{})
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}
