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

// TestGETStreamEndsOnRevocation: the GET stream a go-sdk client keeps open
// for the server's messages (notifications, and requests such as sampling
// that may carry data) was authenticated when it opened and then ran for
// as long as the client kept it, after its task was revoked too. Handler
// now holds it to its peer like the gateway's streams
// (verifier.Guard): a message written after the revocation does not reach
// the agent, and an idle stream ends within the re-check interval.
func TestGETStreamEndsOnRevocation(t *testing.T) {
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "busy", true: "idle"}[idle], func(t *testing.T) {
			f := newFixture(t)
			const task = "spiffe://example.org/agent/researcher/task/T-42"
			view := &verifier.LivenessView{MaxStaleness: time.Hour}
			wall := time.Now()
			if err := view.Update(wall.Add(-time.Minute), []string{task}); err != nil {
				t.Fatal(err)
			}
			f.v.Liveness = view.Check
			getEnded := make(chan struct{}, 8)
			h := f.a.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return f.server }, nil))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(w, r)
				if r.Method == http.MethodGet {
					getEnded <- struct{}{}
				}
			}))
			t.Cleanup(srv.Close)
			changed := make(chan struct{}, 8)
			client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, &mcp.ClientOptions{
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
			})
			tok := f.token(t, "T-42", []string{"fs:read", "fs:write"}, resource)
			cs, err := client.Connect(context.Background(),
				&mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			addTool := func(name string) {
				f.server.AddTool(&mcp.Tool{Name: name, InputSchema: json.RawMessage(`{"type":"object"}`)},
					func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
						return &mcp.CallToolResult{}, nil
					})
			}
			// the stream works: a notification reaches the agent
			deadline := time.After(10 * time.Second)
			for delivered := false; !delivered; {
				addTool("probe_before")
				select {
				case <-changed:
					delivered = true
				case <-time.After(200 * time.Millisecond): // the GET stream may not be open yet
				case <-deadline:
					t.Fatal("no notification reached the agent before the revocation")
				}
			}
			if err := view.Apply(wall, nil, []string{task}); err != nil {
				t.Fatal(err)
			}
			if idle {
				select {
				case <-getEnded:
				case <-time.After(10 * time.Second):
					t.Fatal("the revoked task's GET stream still open 10 s after the revocation")
				}
				return
			}
			addTool("probe_after")
			select {
			case <-changed:
				t.Fatal("a notification sent after the revocation reached the revoked task's agent")
			case <-time.After(2 * time.Second):
			}
		})
	}
}
