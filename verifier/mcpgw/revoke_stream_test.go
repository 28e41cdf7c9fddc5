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

// TestGatewayStreamEndsOnRevocation: a GET stream (server-sent events)
// opened through the gateway while the task was live kept delivering the
// upstream's messages after the task was revoked: the gateway checked the
// stream only when it opened. It now runs under the pipeline's stream
// guard: the stream ends (and the refusal is recorded with the peer) once
// the liveness view no longer holds the task.
func TestGatewayStreamEndsOnRevocation(t *testing.T) {
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
	// The upstream keeps sending; within the guard's idle re-check
	// (StreamRecheckInterval) the gateway ends the stream.
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ended:
			done = true
		case <-deadline:
			t.Fatal("the stream still delivers 10 s after the revocation")
		case <-tick.C:
			select {
			case events <- fmt.Sprintf(ping, 2):
			default:
			}
		}
	}
	var revoked bool
	for _, r := range f.records(t) {
		if r.Reason != "" && strings.HasPrefix(r.Reason, "verifier: revoked") && r.Peer == task {
			revoked = true
		}
	}
	if !revoked {
		t.Errorf("no record of the revoked stream naming %s: %+v", task, f.records(t))
	}
}
