package verifier_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

func TestProxyLongExchangesLeaveNoGoroutines(t *testing.T) {
	e, _, _, _ := liveEnv(t)
	client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	do := func() {
		resp, err := client.Post(base+"/kb/upload", "application/octet-stream", io.NopCloser(strings.NewReader("x"))) // chunked: guarded
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 10 {
		do()
	}
	before := runtime.NumGoroutine()
	for range 300 {
		do()
	}
	var after int
	for range 50 {
		if after = runtime.NumGoroutine(); after <= before+5 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%d goroutines before 300 guarded uploads, %d after", before, after)
}

// Review 17: a long upload into a MiddlewareFunc handler is refused, at
// its task's revocation, with the action the middleware decided (its
// mapping), not the request's raw method and path.
func TestMiddlewareFuncRefusalRecordsTheDecidedAction(t *testing.T) {
	e, view, wall, rec := liveEnv(t)
	got := make(chan string, 16)
	mapped := func(r *http.Request) verifier.Action {
		a := verifier.HTTPAction(r)
		a.Path = "/kb/documents" // e.g. a router's route template
		return a
	}
	h := e.v.MiddlewareFunc(mapped, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		br := bufio.NewReader(r.Body)
		line, _ := br.ReadString('\n')
		got <- line
		_, err := io.ReadAll(br)
		got <- "error: " + errString(err)
	}))
	srvID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(srvID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tr := &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(srvID))}
	t.Cleanup(tr.CloseIdleConnections)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", "https://"+l.Addr().String()+"/kb/documents/42/upload", pr)
	req.Header.Set("Content-Type", "application/octet-stream")
	go func() {
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- "response: " + resp.Status + " " + string(b)
		}
	}()
	pw.Write([]byte("part 1\n"))
	if s := recvWithin(t, got); s != "part 1\n" {
		t.Fatalf("before revocation the handler read %q", s)
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	go pw.Write([]byte("part 2\n"))
	recvWithin(t, got)
	rs := streamRefusals(t, rec, verifier.FrontendHTTP, verifier.ReasonRevoked)
	if len(rs) != 1 {
		t.Fatalf("%d revoked refusals recorded, want 1", len(rs))
	}
	if a := rs[0].Action; a == nil || a.Path != "/kb/documents" {
		t.Fatalf("the refusal records the action %+v, the middleware decided POST /kb/documents", a)
	}
}
