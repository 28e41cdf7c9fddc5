// Command stdioserver is a stdio MCP server for the gateway's tests: it
// serves read_file, write_file and echo, and crash, which writes to stderr
// and exits while the call is in flight (status 3). Each start writes
// "started" and its -tag to stderr.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	tag := flag.String("tag", "", "written to stderr at start")
	noise := flag.Int("noise", 0, "bytes of stderr to write at start")
	flag.Parse()
	fmt.Fprintf(os.Stderr, "started %s env=%s\n", *tag, strings.Join(os.Environ(), ","))
	if *noise > 0 {
		fmt.Fprintln(os.Stderr, strings.Repeat("n", *noise))
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "stdioserver", Version: "1"}, nil)
	for _, name := range []string{"read_file", "write_file", "echo"} {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: name + " " + string(req.Params.Arguments)}}}, nil
			})
	}
	s.AddTool(&mcp.Tool{Name: "crash", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "crashing on demand")
			os.Exit(3)
			return nil, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
