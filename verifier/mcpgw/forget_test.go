package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier/mcpgw"
)

// TestGatewayForgottenSessionsDeletedUpstream: a session the gateway
// forgets — over the task's MaxSessionsPerTask, or over the bound of all
// sessions — is ended at the upstream with DELETE (its Mcp-Session-Id and
// the gateway's upstream credential), so that the upstream does not keep
// state for sessions nobody can use any more.
func TestGatewayForgottenSessionsDeletedUpstream(t *testing.T) {
	t.Cleanup(mcpgw.SetMaxSessions(4))
	f := newFixture(t)
	var n atomic.Int64
	deleted := make(chan string, 16)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			if r.Header.Get("Authorization") != upstreamKey {
				t.Errorf("DELETE with Authorization %q", r.Header.Get("Authorization"))
			}
			deleted <- r.Header.Get("Mcp-Session-Id")
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
	_, gw := f.gateway(t, mcpgw.Config{Upstream: mustURL(t, up.URL+"/mcp"), UpstreamHeader: "Authorization", UpstreamValue: upstreamKey, MaxSessionsPerTask: 2})
	initMsg := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`
	open := func(tok string) {
		t.Helper()
		if resp, body := post(t, gw.URL, tok, initMsg); resp.StatusCode != 200 {
			t.Fatalf("initialize: %d %s", resp.StatusCode, body)
		}
	}
	wait := func(want string) {
		t.Helper()
		select {
		case sid := <-deleted:
			if sid != want {
				t.Fatalf("DELETE of %q, want %q", sid, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s was never deleted at the upstream", want)
		}
	}
	tokA := f.token(t, "T-41", []string{"fs:read"}, resource)
	open(tokA) // s-1
	open(tokA) // s-2
	open(tokA) // s-3: over A's cap of 2, s-1 is forgotten
	wait("s-1")
	tokB := f.token(t, "T-43", []string{"fs:read"}, resource)
	open(tokB)                                              // s-4
	open(tokB)                                              // s-5: 4 sessions, the bound of all tasks
	open(f.token(t, "T-44", []string{"fs:read"}, resource)) // s-6: A and B hold two each; the older of equals, A, loses s-2
	wait("s-2")
	select {
	case sid := <-deleted:
		t.Fatalf("%s deleted, which the gateway still serves", sid)
	default:
	}
}
