package mcpgw_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGatewayCancelTranslated: the upstream knows a call by the gateway's
// id; the agent's notifications/cancelled naming its own id (spelled as
// it likes) cancels the call upstream.
func TestGatewayCancelTranslated(t *testing.T) {
	f := newFixture(t)
	up := newUpstream(t, nil, 0)
	up.slow, up.slowStarted, up.slowCancelled = make(chan struct{}), make(chan struct{}), make(chan struct{})
	gw := f.httpGateway(t, up)
	t.Cleanup(func() { // before the servers close (cleanups run last first)
		select {
		case <-up.slowCancelled:
		default:
			close(up.slow)
		}
	})
	tok := f.token(t, "T-42", []string{"fs:read"}, resource)
	resp, body := rawReq(t, "POST", gw.URL, tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	done := make(chan string, 1)
	go func() {
		_, body := rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","id":7.0,"method":"tools/call","params":{"name":"slow","arguments":{}}}`)
		done <- body
	}()
	<-up.slowStarted
	// another task cannot cancel it (not its session)
	other := f.token(t, "T-43", []string{"fs:read"}, resource)
	if resp, _ := rawReq(t, "POST", gw.URL, other, sid, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7.0}}`); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("another task's cancellation: %d", resp.StatusCode)
	}
	if resp, body := rawReq(t, "POST", gw.URL, tok, sid, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"reason":"x","requestId":7.0}}`); resp.StatusCode/100 != 2 {
		t.Fatalf("cancellation: %d %s", resp.StatusCode, body)
	}
	select {
	case <-up.slowCancelled:
	case <-time.After(30 * time.Second): // a bound on a failure, not a timing
		t.Fatal("the upstream did not cancel the call: it got the agent's id, not its own")
	}
	if body := <-done; strings.Contains(body, "slow done") && !strings.Contains(body, `"id":7.0`) {
		t.Fatalf("answer under another id: %s", body)
	}
}
