package verifier_test

// Review 17: a revoked task's exchange that goes on through the proxy or
// into a Middleware handler because its body's declared length is at most
// LongBodyBytes (not guarded), however slowly it is sent.

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A request body of a known length <= LongBodyBytes is not guarded: the
// task sends all of it but the last byte while live, is revoked, and then
// sends the last byte; the upstream receives the complete request (and
// acts on it) after the revocation.
func TestProxySlowShortUploadEndsOnRevocation(t *testing.T) {
	slowShortUpload(t, "upstream", func(e *attackEnv, h http.Handler) (*http.Client, string) {
		client, base, _ := proxyToHandler(t, e, h)
		return client, base
	})
}

// The same into a handler behind Verifier.Middleware.
func TestMiddlewareSlowShortUploadEndsOnRevocation(t *testing.T) {
	slowShortUpload(t, "handler", func(e *attackEnv, h http.Handler) (*http.Client, string) {
		return middlewareServer(t, e, h)
	})
}

// slowShortUpload sends a 1,000-byte body to what serve puts in front of a
// reading handler (named what): all but the last byte while the task is
// live, the last after its revocation; the handler must not get it whole.
func slowShortUpload(t *testing.T, what string, serve func(*attackEnv, http.Handler) (*http.Client, string)) {
	t.Helper()
	e, view, wall, _ := liveEnv(t)
	started := make(chan struct{}, 1)
	got := make(chan string, 1)
	client, base := serve(e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- "complete: " + strconv.Itoa(len(b)) + " bytes"
	}))
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", base+"/kb/transfer", pr)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = 1000
	go func() {
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write(bytes.Repeat([]byte("a"), 999))
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatalf("the %s was not called in 20 s", what)
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	go pw.Write([]byte("b")) // the last byte, after the revocation
	if s := recvWithin(t, got); s != "" && s[0] != 'e' {
		t.Fatalf("the revoked task's upload reached the %s whole after the revocation: %s", what, s)
	}
}

// A response of a known length <= LongBodyBytes that the upstream sends
// slowly: what it sends after the task's revocation still reaches the
// revoked task.
func TestProxySlowShortDownloadEndsOnRevocation(t *testing.T) {
	e, view, wall, _ := liveEnv(t)
	next := make(chan bool)
	client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "60000") // <= LongBodyBytes
		w.Write(bytes.Repeat([]byte("x"), 30000))
		http.NewResponseController(w).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		w.Write(bytes.Repeat([]byte("s"), 30000)) // data sent after the revocation
	}))
	resp, err := client.Get(base + "/kb/report")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 16<<10) // the reverse proxy has passed on at least this much of the first 30000
	if _, err := readFullWithin(t, resp.Body, buf); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	buf = make([]byte, 60000-16<<10)
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	select {
	case next <- true:
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream did not send the rest in 20 s")
	}
	if n, err := readFullWithin(t, resp.Body, buf); err == nil {
		t.Fatalf("the revoked task still receives the response: %d more bytes (ending %q)", n, buf[len(buf)-8:])
	}
}

// A request without a long body whose upstream answers late (a slow
// search, a long-running job): the answer, produced after the task's
// revocation, reaches the revoked task.
func TestProxySlowAnswerAfterRevocation(t *testing.T) {
	e, view, wall, _ := liveEnv(t)
	started := make(chan struct{}, 1)
	next := make(chan bool)
	client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", "6")
		w.Write([]byte("secret"))
	}))
	type res struct {
		body string
		err  error
	}
	done := make(chan res, 1)
	go func() {
		resp, err := client.Get(base + "/kb/search")
		if err != nil {
			done <- res{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- res{body: strconv.Itoa(resp.StatusCode) + " " + string(b), err: err}
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream was not called in 20 s")
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	select {
	case next <- true:
	case <-time.After(20 * time.Second):
		// the exchange was ended: the upstream's context is done
	}
	select {
	case r := <-done:
		if r.err == nil && r.body == "200 secret" {
			t.Fatalf("the revoked task got the answer produced after its revocation: %q", r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer in 20 s")
	}
}
