package mcpauth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentid/agentid/verifier"
)

// Review 17: a tool call the task made while live, answered by go-sdk as
// a stream on the POST (its result, and on the way its progress
// notifications and requests such as sampling), is not held to its peer:
// what the server sends on it after the task's revocation — here the
// call's result, produced after the revocation — reaches the revoked
// task's agent.
func TestPOSTStreamEndsOnRevocation(t *testing.T) {
	f := newFixture(t)
	const task = "spiffe://example.org/agent/researcher/task/T-42"
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	wall := time.Now()
	if err := view.Update(wall.Add(-time.Minute), []string{task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = view.Check
	started, release := make(chan struct{}, 1), make(chan struct{})
	f.server.AddTool(&mcp.Tool{Name: "read_text_file", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "contents read after the revocation"}}}, nil
		})
	h := f.a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	cs, err := client.Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	type out struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": "/srv/shared/notes.md"}})
		done <- out{res, err}
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the tool was not called in 20 s")
	}
	if err := view.Apply(wall, nil, []string{task}); err != nil {
		t.Fatal(err)
	}
	select {
	case release <- struct{}{}:
	case <-time.After(5 * time.Second): // the call was ended
	}
	select {
	case o := <-done:
		if o.err == nil && !o.res.IsError {
			t.Fatalf("the revoked task's agent got the result of a call answered after its revocation: %+v", o.res.Content[0])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no result and no error in 20 s")
	}
}

// The same for the server's own request (sampling) that a tool call sends
// after the revocation: go-sdk sends it on the call's POST stream, not on
// the GET stream, so the prompt reaches the revoked task's agent (and its
// answer the server).
func TestSamplingAfterRevocation(t *testing.T) {
	f := newFixture(t)
	const task = "spiffe://example.org/agent/researcher/task/T-42"
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	wall := time.Now()
	if err := view.Update(wall.Add(-time.Minute), []string{task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = view.Check
	started, release := make(chan struct{}, 1), make(chan struct{})
	f.server.AddTool(&mcp.Tool{Name: "read_text_file", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			_, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10,
				Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "secret prompt sent after the revocation"}}}})
			if err != nil {
				return nil, err
			}
			return &mcp.CallToolResult{}, nil
		})
	h := f.a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil))
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	sampled := make(chan string, 1)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			sampled <- req.Params.Messages[0].Content.(*mcp.TextContent).Text
			return &mcp.CreateMessageResult{Role: "assistant", Model: "m", Content: &mcp.TextContent{Text: "ok"}}, nil
		},
	})
	tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
	cs, err := client.Connect(context.Background(),
		&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": "/srv/shared/notes.md"}})
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the tool was not called in 20 s")
	}
	if err := view.Apply(wall, nil, []string{task}); err != nil {
		t.Fatal(err)
	}
	select {
	case release <- struct{}{}:
	case <-time.After(5 * time.Second): // the call was ended
	}
	select {
	case p := <-sampled:
		t.Fatalf("the server's sampling request sent after the revocation reached the revoked task's agent: %q", p)
	case <-time.After(3 * time.Second):
	}
}
