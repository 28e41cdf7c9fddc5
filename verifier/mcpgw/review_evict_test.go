package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestReviewSessionEviction: task B opens four times as many sessions as
// the gateway remembers (65,536 in the review; the bound is made 1,024
// here so that the test is quick); task A's session must still be A's:
// a task over its own cap forgets its own oldest sessions.
func TestReviewSessionEviction(t *testing.T) {
	const maxSessions = 1 << 10
	t.Cleanup(mcpgw.SetMaxSessions(maxSessions))
	f := newFixture(t)
	var n atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp")})
	tokA := f.token(t, "T-41", []string{"fs:read"}, resource)
	tokB := f.token(t, "T-43", []string{"fs:read"}, resource)
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	resp, _ := post(t, gw.URL, tokA, initMsg)
	sid := resp.Header.Get("Mcp-Session-Id")
	ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	if resp, _ := post(t, gw.URL, tokA, ping, "Mcp-Session-Id", sid); resp.StatusCode != 200 {
		t.Fatalf("A's session: %d", resp.StatusCode)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 4*maxSessions; i += 8 {
				req, _ := http.NewRequest("POST", gw.URL+"/mcp", strings.NewReader(initMsg))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer "+tokB)
				resp, err := c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	wg.Wait()
	if resp, body := post(t, gw.URL, tokA, ping, "Mcp-Session-Id", sid); resp.StatusCode != 200 {
		t.Fatalf("after task B opened %d sessions, task A's session is gone: %d %s", 4*maxSessions, resp.StatusCode, body)
	}
	// B's cap (MaxSessionsPerTask, 256 by default) forgot B's own oldest
	if resp, body := post(t, gw.URL, tokB, ping, "Mcp-Session-Id", "s-2"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("B's first session outlived B's cap: %d %s", resp.StatusCode, body)
	}
}
