package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayIdleSessionsForgotten: with SessionIdleTimeout, a session
// without a request for that long is forgotten (404 at the gateway) and
// DELETEd upstream; one with a stream open (a GET) is not idle, however
// long the stream lasts; the clock is the test's.
func TestGatewayIdleSessionsForgotten(t *testing.T) {
	f := newFixture(t)
	var n atomic.Int64
	deleted := make(chan string, 16)
	getOpen, getDone := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodDelete:
			deleted <- r.Header.Get("Mcp-Session-Id")
			return
		case http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			close(getOpen)
			<-getDone
			return
		}
		in, _ := io.ReadAll(r.Body)
		if r.Header.Get("Mcp-Session-Id") == "" {
			w.Header().Set("Mcp-Session-Id", fmt.Sprintf("s-%d", n.Add(1)))
		}
		var m struct{ ID json.RawMessage }
		json.Unmarshal(in, &m)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(m.ID) + `,"result":{}}`))
	}))
	t.Cleanup(up.Close)
	var endGET sync.Once
	closeGET := func() { endGET.Do(func() { close(getDone) }) }
	g, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp"), SessionIdleTimeout: time.Hour})
	t.Cleanup(closeGET) // first: the servers' Close waits for the GET
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	g.SetSessionClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	tok := f.token(t, "T-41", []string{"fs:read"}, resource)
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	post(t, gw.URL, tok, initMsg) // s-1
	post(t, gw.URL, tok, initMsg) // s-2
	post(t, gw.URL, tok, initMsg) // s-3
	// s-2 holds a GET stream open for the whole test's hours
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		req, _ := http.NewRequest("GET", gw.URL+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Mcp-Session-Id", "s-2")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-getOpen

	advance(40 * time.Minute)
	if resp, body := post(t, gw.URL, tok, ping, "Mcp-Session-Id", "s-3"); resp.StatusCode != 200 { // s-3 used at 40 min
		t.Fatalf("s-3 at 40 min: %d %s", resp.StatusCode, body)
	}
	advance(30 * time.Minute) // 70 min: s-1 idle for 70, s-2 streaming, s-3 idle for 30
	if resp, body := post(t, gw.URL, tok, ping, "Mcp-Session-Id", "s-3"); resp.StatusCode != 200 {
		t.Fatalf("s-3 at 70 min: %d %s", resp.StatusCode, body)
	}
	select {
	case sid := <-deleted:
		if sid != "s-1" {
			t.Fatalf("DELETE of %s, want s-1", sid)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the idle s-1 was never deleted upstream")
	}
	if resp, _ := post(t, gw.URL, tok, ping, "Mcp-Session-Id", "s-1"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("idle s-1: %d, want 404", resp.StatusCode)
	}
	// the stream ends; an hour later s-2 is idle too
	closeGET()
	<-streamDone
	advance(61 * time.Minute)
	post(t, gw.URL, tok, initMsg) // s-4: any request sweeps
	for _, want := range []string{"s-2", "s-3"} {
		select {
		case sid := <-deleted:
			if sid != "s-2" && sid != "s-3" {
				t.Fatalf("DELETE of %s, want %s", sid, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s was never deleted upstream", want)
		}
	}
	// counted once the upstream answered the DELETE (after the handler sent the id)
	for deadline := time.Now().Add(30 * time.Second); g.ForgottenSessionsDeleted() != 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ForgottenSessionsDeleted = %d, want 3", g.ForgottenSessionsDeleted())
		}
	}
}
