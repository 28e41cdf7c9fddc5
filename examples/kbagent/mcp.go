package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// runMCP calls an MCP server over Streamable HTTP with the task's
// JWT-SVID for audience (the server's resource URI) as bearer token: it
// prints the tools the server lists to this task, then the result of
// calling tool with args (a JSON object), if tool is set. A call the
// server refuses prints "refused: " and the MCP error.
func runMCP(endpoint, audience, tool, args, socket string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if audience == "" {
		return errors.New("-audience (the MCP server's resource URI) is required with -mcp")
	}
	var arguments map[string]any
	if err := json.Unmarshal([]byte(args), &arguments); err != nil {
		return fmt.Errorf("-args: not a JSON object: %w", err)
	}
	token, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience}, workloadapi.WithAddr(socket))
	if err != nil {
		return fmt.Errorf("no JWT-SVID from the Workload API: %w", err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: bearer(token.Marshal())}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "kbagent", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: client}, nil)
	if err != nil {
		return err
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return err
	}
	var names []string
	for _, t := range tools.Tools {
		names = append(names, t.Name)
	}
	fmt.Printf("tools: %s\n", strings.Join(names, ", "))
	if tool == "" {
		return nil
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: arguments})
	var je *jsonrpc.Error
	switch {
	case errors.As(err, &je):
		fmt.Printf("%s: refused: %d %s\n", tool, je.Code, je.Message)
	case err != nil:
		return err
	default:
		var out []string
		for _, c := range res.Content {
			if t, ok := c.(*mcp.TextContent); ok {
				out = append(out, t.Text)
			}
		}
		fmt.Printf("%s: %s\n", tool, strings.Join(out, " "))
	}
	return nil
}

// bearer adds the JWT-SVID to every request.
type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}
