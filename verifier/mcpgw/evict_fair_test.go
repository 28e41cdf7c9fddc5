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

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayFullTableEvictsTheHeaviestTask: when the sessions of all
// tasks fill the gateway's table, the task holding the most sessions
// loses its oldest, not whichever task's session is oldest: otherwise one
// task allowed as many sessions as the table holds (or a few tasks under
// their caps) push out, and get DELETEd upstream, everyone else's.
func TestGatewayFullTableEvictsTheHeaviestTask(t *testing.T) {
	const table = 64
	for _, tc := range []struct {
		name           string
		perTask, tasks int
	}{
		{"one task allowed the whole table", table, 1},
		{"four tasks under their caps", table / 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(mcpgw.SetMaxSessions(table))
			f := newFixture(t)
			var n atomic.Int64
			var mu sync.Mutex
			var deleted []string
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodDelete {
					mu.Lock()
					deleted = append(deleted, r.Header.Get("Mcp-Session-Id"))
					mu.Unlock()
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
			_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp"), MaxSessionsPerTask: tc.perTask})
			initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
			tokA := f.token(t, "T-41", []string{"fs:read"}, resource)
			resp, _ := post(t, gw.URL, tokA, initMsg)
			sid := resp.Header.Get("Mcp-Session-Id")
			for i := range tc.tasks {
				tok := f.token(t, fmt.Sprint("T-5", i), []string{"fs:read"}, resource)
				for range tc.perTask {
					post(t, gw.URL, tok, initMsg)
				}
			}
			ping := `{"jsonrpc":"2.0","id":2,"method":"ping"}`
			if resp, body := post(t, gw.URL, tokA, ping, "Mcp-Session-Id", sid); resp.StatusCode != 200 {
				t.Fatalf("task A's only session was pushed out by the others': %d %s", resp.StatusCode, body)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range deleted {
				if d == sid {
					t.Fatalf("task A's session %s was DELETEd upstream", sid)
				}
			}
		})
	}
}
