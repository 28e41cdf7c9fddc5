package mcpgw_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Review 20: an upstream that sends its answer's headers (200,
// application/json) at once and its body when the tool is done: the
// gateway's refused() ran when the headers arrived, then answerJSON read
// the body and relayed it with no re-check — the task revoked while the
// tool ran got its result.
func TestGatewayJSONBodyAfterHeadersNotRelayedToRevoked(t *testing.T) {
	answer := make(chan struct{})
	s := startSlowCall(t, func(w http.ResponseWriter, r *http.Request, id json.RawMessage, _ <-chan struct{}) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush() // headers now, body when the tool is done
		<-answer
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, id)
	})
	time.Sleep(100 * time.Millisecond) // the gateway has the headers and waits on the body
	s.revoke(t)
	close(answer)
	if r := s.result(t); strings.Contains(r.body, "the secret result") {
		t.Fatalf("the revoked task got the call's result: %s", r.body)
	}
}

// Review 20: the refusal written by refused() for a JSON answer went out
// with the upstream answer's headers, copied into w before the check: a
// tool's result carried in a header (or a Set-Cookie) reached the revoked
// task with the refusal. Whether the answer or the idle re-check comes
// first, the agent gets the refusal and none of the upstream's headers.
func TestGatewayRefusalCarriesNoUpstreamHeaders(t *testing.T) {
	answer := make(chan struct{})
	s := startSlowCall(t, func(w http.ResponseWriter, r *http.Request, id json.RawMessage, _ <-chan struct{}) {
		<-answer
		w.Header().Set("X-Tool-Output", "the secret result")
		w.Header().Set("Set-Cookie", "upstream-session=s3cr3t")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"the secret result"}]}}`, id)
	})
	s.revoke(t)
	close(answer) // the tool finishes within the re-check interval
	r := s.result(t)
	if !strings.Contains(r.body, "revoked") {
		t.Fatalf("the revoked task's call was not refused: %s", r.body)
	}
	if h := r.resp.Header.Get("X-Tool-Output") + r.resp.Header.Get("Set-Cookie"); h != "" {
		t.Errorf("the refusal %s carries the upstream answer's headers: X-Tool-Output %q, Set-Cookie %q", r.body, r.resp.Header.Get("X-Tool-Output"), r.resp.Header.Get("Set-Cookie"))
	}
}
