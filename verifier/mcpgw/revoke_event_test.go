package mcpgw_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayEventAfterRevocation (review 13): README promises that open MCP
// gateway event streams are refused "at their next message and within a
// second when idle"; the gateway discards the guard's check (ctx, _, stop
// := g.v.Guard(...)), so an event the upstream sends right after the
// revocation still reaches the agent until the next idle tick.
func TestGatewayEventAfterRevocation(t *testing.T) {
	f := newFixture(t)
	view := &verifier.LivenessView{MaxStaleness: time.Hour}
	task := "spiffe://example.org/agent/researcher/task/T-41"
	if err := view.Update(time.Now().Add(-time.Minute), []string{task}); err != nil {
		t.Fatal(err)
	}
	f.v.Liveness = view.Check
	events := make(chan string)
	var closeOnce sync.Once
	stop := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			for {
				select {
				case ev := <-events:
					fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
					w.(http.Flusher).Flush()
				case <-r.Context().Done():
					return
				case <-stop:
					return
				}
			}
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Mcp-Session-Id", "s-1")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"u","version":"1"}}}`))
	}))
	t.Cleanup(func() { closeOnce.Do(func() { close(stop) }); up.Close() })
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	post(t, gw.URL, tok, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	req, _ := http.NewRequest("GET", gw.URL+"/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Mcp-Session-Id", "s-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan string, 1)
	got2 := make(chan string, 1)
	ended := make(chan struct{})
	go func() { // a client reading as fast as the stream comes
		defer close(ended)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") {
				select {
				case first <- l:
				default:
				}
				if strings.Contains(l, `"2"`) {
					got2 <- l
				}
			}
		}
	}()
	ping := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"%d"}}`
	events <- fmt.Sprintf(ping, 1)
	select {
	case l := <-first:
		if !strings.Contains(l, `"1"`) {
			t.Fatalf("first event: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no first event")
	}
	if err := view.Apply(time.Now(), nil, []string{task}); err != nil { // revoked
		t.Fatal(err)
	}
	select { // the next message after the revocation
	case events <- fmt.Sprintf(ping, 2):
	case <-time.After(3 * time.Second):
		return // the stream ended before the upstream could send
	}
	select {
	case l := <-got2:
		t.Errorf("an event sent after the revocation reached the agent: %q", l)
	case <-ended:
	case <-time.After(3 * time.Second):
	}
}
