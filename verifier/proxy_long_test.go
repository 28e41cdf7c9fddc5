package verifier_test

// Long exchanges through the proxy that are neither upgrades nor streamed
// responses — an upload of unknown or large length, a large download of
// known length — are held to the peer like a stream: a revocation ends
// them within the re-check interval instead of when they finish
// (the kill switch, issue 12; left open by session 6).

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// An upload (chunked, or of a known length over LongBodyBytes) that its
// task keeps sending after the task's revocation does not reach the
// upstream: the upstream's read of the body fails, at the next chunk or
// within the re-check interval when the client is idle.
func TestProxyUploadEndsOnRevocation(t *testing.T) {
	for _, length := range []string{"chunked", "known"} {
		for _, idle := range []bool{false, true} {
			t.Run(length+map[bool]string{false: "/busy", true: "/idle"}[idle], func(t *testing.T) {
				e, view, wall, rec := liveEnv(t)
				got := make(chan string, 16)
				client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					br := bufio.NewReader(r.Body)
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							got <- "error: " + err.Error()
							return
						}
						got <- line
					}
				}))
				pr, pw := io.Pipe()
				defer pw.Close()
				req, _ := http.NewRequest("POST", base+"/kb/upload", pr)
				req.Header.Set("Content-Type", "application/octet-stream")
				if length == "known" {
					req.ContentLength = 4 << 20
				}
				go func() {
					if resp, err := client.Do(req); err == nil {
						resp.Body.Close()
					}
				}()
				pw.Write([]byte("part 1\n"))
				if s := recvWithin(t, got); s != "part 1\n" {
					t.Fatalf("before revocation the upstream read %q", s)
				}
				if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
					t.Fatal(err)
				}
				if !idle {
					go pw.Write([]byte("part 2 after revocation\n"))
				}
				if s := recvWithin(t, got); !strings.HasPrefix(s, "error: ") {
					t.Fatalf("the revoked task's upload still reaches the upstream: %q", s)
				}
				if rs := streamRefusals(t, rec, verifier.FrontendProxy, verifier.ReasonRevoked); len(rs) != 1 {
					t.Errorf("%d revoked refusals recorded, want 1", len(rs))
				}
			})
		}
	}
}

// A download of known length over LongBodyBytes stops at the revocation
// of its task: the client gets no more of it (the body is cut, not
// ended), at the next block the upstream sends or within the re-check
// interval when the upstream is idle.
func TestProxyLongDownloadEndsOnRevocation(t *testing.T) {
	const block = 64 << 10
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "busy", true: "idle"}[idle], func(t *testing.T) {
			e, view, wall, rec := liveEnv(t)
			next := make(chan bool)
			client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(64*block))
				rc := http.NewResponseController(w)
				for i := range 64 {
					if i > 0 { // the first block at once, each further one on demand
						select {
						case <-next:
						case <-r.Context().Done():
							return
						}
					}
					w.Write(bytes.Repeat([]byte("x"), block))
					rc.Flush()
				}
			}))
			resp, err := client.Get(base + "/kb/big")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := make([]byte, block)
			if _, err := readFullWithin(t, resp.Body, buf); err != nil {
				t.Fatalf("before revocation: %v", err)
			}
			if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
				t.Fatal(err)
			}
			if !idle {
				select {
				case next <- true:
				case <-time.After(20 * time.Second):
					t.Fatal("the upstream did not send the next block in 20 s")
				}
			}
			if n, err := readFullWithin(t, resp.Body, buf); err == nil {
				t.Fatalf("the revoked task's download goes on: %d more bytes", n)
			}
			if rs := streamRefusals(t, rec, verifier.FrontendProxy, verifier.ReasonRevoked); len(rs) != 1 {
				t.Errorf("%d revoked refusals recorded, want 1", len(rs))
			}
		})
	}
}

// Short exchanges are not guarded (no timer per request): a small upload
// and a small download of known length pass as before.
func TestProxyShortBodiesPass(t *testing.T) {
	e, _, _, _ := liveEnv(t)
	client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}))
	body := strings.Repeat("y", 1000)
	resp, err := client.Post(base+"/kb/echo", "application/octet-stream", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != body {
		t.Fatalf("echo: %d bytes, %v", len(b), err)
	}
}

func recvWithin(t *testing.T, c chan string) string {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream read nothing, and no error, in 20 s")
		return ""
	}
}

func readFullWithin(t *testing.T, r io.Reader, buf []byte) (int, error) {
	t.Helper()
	type res struct {
		n   int
		err error
	}
	c := make(chan res, 1)
	go func() { n, err := io.ReadFull(r, buf); c <- res{n, err} }()
	select {
	case r := <-c:
		return r.n, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("the download neither went on nor ended in 20 s")
		return 0, nil
	}
}

// The same for an upload into a handler behind Verifier.Middleware: once
// the task is revoked, the handler's next read of the body fails (and its
// context is cancelled), whether the client goes on sending or is idle.
func TestMiddlewareUploadEndsOnRevocation(t *testing.T) {
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "busy", true: "idle"}[idle], func(t *testing.T) {
			e, view, wall, rec := liveEnv(t)
			got := make(chan string, 16)
			client, base := middlewareServer(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				br := bufio.NewReader(r.Body)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						got <- "error: " + err.Error()
						<-r.Context().Done()
						got <- "context done"
						return
					}
					got <- line
				}
			}))
			pr, pw := io.Pipe()
			defer pw.Close()
			req, _ := http.NewRequest("POST", base+"/kb/upload", pr)
			req.Header.Set("Content-Type", "application/octet-stream")
			go func() {
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			pw.Write([]byte("part 1\n"))
			if s := recvWithin(t, got); s != "part 1\n" {
				t.Fatalf("before revocation the handler read %q", s)
			}
			if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
				t.Fatal(err)
			}
			if !idle {
				go pw.Write([]byte("part 2 after revocation\n"))
			}
			if s := recvWithin(t, got); !strings.HasPrefix(s, "error: ") {
				t.Fatalf("the revoked task's upload still reaches the handler: %q", s)
			}
			if s := recvWithin(t, got); s != "context done" {
				t.Fatalf("after the refusal: %q", s)
			}
			if rs := streamRefusals(t, rec, verifier.FrontendHTTP, verifier.ReasonRevoked); len(rs) != 1 {
				t.Errorf("%d revoked refusals recorded, want 1", len(rs))
			}
		})
	}
}

// middlewareServer serves h behind e.v.Middleware over real mTLS; its
// client presents the task's SVID.
func middlewareServer(t *testing.T, e *attackEnv, h http.Handler) (*http.Client, string) {
	t.Helper()
	srvID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(srvID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.v.Middleware(h), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tr := &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(srvID))}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, "https://" + l.Addr().String()
}
