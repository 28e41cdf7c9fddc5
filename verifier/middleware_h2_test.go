package verifier_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Review 17: the middleware's idle-upload cut over HTTP/2 (a server the
// user starts with TLS gets h2 by default).
func TestMiddlewareIdleUploadEndsOverHTTP2(t *testing.T) {
	e, view, wall, _ := liveEnv(t)
	got := make(chan string, 16)
	srv := httptest.NewUnstartedServer(e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			got <- "not h2: " + r.Proto
			return
		}
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- line
		}
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := srv.Client()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/kb/upload", pr)
	req.Header.Set("Authorization", "Bearer "+e.jwt)
	req.Header.Set("Content-Type", "application/octet-stream")
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got <- "response: " + resp.Status + " " + string(b)
		} else {
			got <- "client: " + err.Error()
		}
	}()
	pw.Write([]byte("part 1\n"))
	if s := recvWithin(t, got); s != "part 1\n" {
		t.Fatalf("before revocation the handler read %q", s)
	}
	if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
		t.Fatal(err)
	}
	if s := recvWithin(t, got); !strings.HasPrefix(s, "error: ") {
		t.Fatalf("got %q", s)
	}
	// and the busy case: bytes sent after the revocation do not arrive
	// (the stream's read failed above; a second stream works for nobody)
}
