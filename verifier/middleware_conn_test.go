package verifier_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Review 17: at a long upload's refusal the middleware moves the
// connection's read deadline to now. When the handler had already read
// the whole body, that fails net/http's background read, which cancels
// the connection's base context: every later request on the same
// keep-alive connection — here a live task's, with its own JWT-SVID, as a
// client (an orchestrator, a gateway) that pools connections sends it —
// starts with its context already cancelled.
func TestMiddlewareRefusalSparesTheNextRequestOnTheConnection(t *testing.T) {
	e, view, wall, _ := liveEnv(t)
	otherID := spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-50")
	if err := view.Update(wall.Add(-30*time.Second), []string{taskID.String(), plannerID, otherID.String()}); err != nil {
		t.Fatal(err)
	}
	c := claims()
	c.Task, c.Chain, c.Deadline = "T-50", []string{}, time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	otherJWT := e.ca.CreateJWTSVID(otherID, []string{"kb"}, c.JWTClaims())

	bodyRead := make(chan struct{}, 1)
	second := make(chan string, 1)
	srv := httptest.NewServer(e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost { // the revoked task's upload: read whole, then processed
			io.ReadAll(r.Body)
			bodyRead <- struct{}{}
			<-r.Context().Done() // ended by the guard at the revocation
			return
		}
		second <- "context: " + errString(r.Context().Err())
	})))
	t.Cleanup(srv.Close)
	tr := &http.Transport{MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	req, _ := http.NewRequest("POST", srv.URL+"/kb/upload", io.NopCloser(strings.NewReader("part 1\n"))) // chunked: guarded
	req.Header.Set("Authorization", "Bearer "+e.jwt)
	req.Header.Set("Content-Type", "application/octet-stream")
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-bodyRead:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler did not read the body in 20 s")
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first request: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the revoked task's request did not end in 20 s")
	}

	reused := false
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req2, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/kb/doc", nil)
	req2.Header.Set("Authorization", "Bearer "+otherJWT)
	resp, err := client.Do(req2)
	if err != nil {
		t.Fatalf("the live task's request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the live task's request: %s", resp.Status)
	}
	if s := recvWithin(t, second); s != "context: <nil>" {
		t.Fatalf("the live task's request on the same connection (reused: %v) began with its %s", reused, s)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
