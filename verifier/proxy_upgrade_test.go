package verifier_test

// Protocol upgrades through the proxy: off unless allowed, and an allowed
// upgraded connection is held to the peer's liveness and expiry (issue 10,
// review 11 finding F1).

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// echoUpstream switches to an "echo" protocol on request and answers each
// line with "did <line> for task <the task the proxy named>".
func echoUpstream() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			w.WriteHeader(200)
			return
		}
		task := r.Header.Get(verifier.HeaderTask)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString("did " + strings.TrimSpace(line) + " for task " + task + "\n")
			rw.Flush()
		}
	})
}

// upgradeProxy is a real mTLS proxy (with allowUpgrades) in front of
// echoUpstream; its client presents clientSVID. hits counts upstream
// requests.
func upgradeProxy(t *testing.T, e *attackEnv, allowUpgrades bool, clientSVID *x509svid.SVID) (*http.Client, string, *int) {
	t.Helper()
	hits := new(int)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*hits++
		echoUpstream().ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	p := verifier.NewProxy(e.v, u, nil)
	p.AllowUpgrades = allowUpgrades
	srv := &http.Server{Handler: p, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	if clientSVID == nil {
		c := claims()
		c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
		clientSVID = e.ca.CreateX509SVID(taskID, ext(t, c))
	}
	// No Timeout: the client's body wrapper would hide the upgraded connection.
	return &http.Client{Transport: &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(
		clientSVID, e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))}}, "https://" + l.Addr().String(), hits
}

// upgrade asks for the echo protocol with the given header spellings and
// returns the response (and the upgraded connection on 101).
func upgrade(t *testing.T, client *http.Client, base string, hdr ...string) (*http.Response, io.ReadWriteCloser) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/kb/ws", nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header[hdr[i]] = append(req.Header[hdr[i]], hdr[i+1]) // as spelled
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body.Close()
		return resp, nil
	}
	rwc := resp.Body.(io.ReadWriteCloser)
	t.Cleanup(func() { rwc.Close() })
	return resp, rwc
}

// Protocol upgrades (WebSocket, h2c, …) are refused by default, in any
// spelling: the upstream never sees them.
func TestProxyRefusesUpgradesByDefault(t *testing.T) {
	e, _, _, rec := liveEnv(t)
	client, base, hits := upgradeProxy(t, e, false, nil)
	for name, hdr := range map[string][]string{
		"echo":                {"Connection", "Upgrade", "Upgrade", "echo"},
		"websocket any case":  {"connection", "keep-alive, UPGRADE", "upgrade", "WebSocket"},
		"h2c":                 {"Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"},
		"upgrade alone":       {"Upgrade", "echo"},
		"connection: upgrade": {"Connection", "upgrade"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, rwc := upgrade(t, client, base, hdr...)
			if rwc != nil || resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get(verifier.HeaderDenyReason), "upgrade") {
				t.Errorf("%d %q, want 400 naming the upgrade", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
			}
		})
	}
	if *hits != 0 {
		t.Errorf("the upstream saw %d upgrade requests", *hits)
	}
	// Refusals are decisions: recorded, with the peer.
	rec.load(t)
	n := 0
	for _, r := range rec.recs {
		if r.Frontend == verifier.FrontendProxy && r.Decision == "deny" && strings.Contains(r.Reason, "upgrade") && r.Peer == taskID.String() {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d upgrade refusals recorded with the peer, want 5", n)
	}
	// CONNECT (a tunnel) is never proxied, allowed upgrades or not, in
	// authority form or (as some clients send it) origin form.
	for _, allow := range []bool{false, true} {
		client, base, hits := upgradeProxy(t, e, allow, nil)
		for _, target := range []string{"example.org:443", "/kb/x"} {
			req, _ := http.NewRequest("CONNECT", base, nil)
			req.URL.Opaque, req.Host = target, target
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || *hits != 0 {
				t.Errorf("CONNECT %s (allow_upgrades %v): %d %q, upstream hits %d", target, allow, resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason), *hits)
			}
		}
	}
	// Plain requests still pass.
	if r, err := client.Get(base + "/kb/x"); err != nil || r.StatusCode != 200 {
		t.Fatalf("plain request: %v %v", r, err)
	}
}

// With upgrades allowed, an upgraded connection is closed at its first
// use after the revocation of a task in the peer's chain — and an idle
// one within the re-check interval.
func TestProxyUpgradeEndsOnRevocation(t *testing.T) {
	for _, idle := range []bool{false, true} {
		name := map[bool]string{false: "busy", true: "idle"}[idle]
		t.Run(name, func(t *testing.T) {
			e, view, wall, rec := liveEnv(t)
			client, base, _ := upgradeProxy(t, e, true, nil)
			resp, rwc := upgrade(t, client, base, "Connection", "Upgrade", "Upgrade", "echo")
			if rwc == nil {
				t.Fatalf("no upgrade: %d %s", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
			}
			br := bufio.NewReader(rwc)
			if _, err := io.WriteString(rwc, "first\n"); err != nil {
				t.Fatal(err)
			}
			if got, err := br.ReadString('\n'); err != nil || got != "did first for task T-42\n" {
				t.Fatalf("before revocation: %q %v", got, err)
			}
			if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
				t.Fatal(err)
			}
			if r, err := client.Get(base + "/kb/x"); err != nil || r.StatusCode != 401 {
				t.Fatalf("a new request after the revocation: %v %v", r, err)
			}
			if !idle {
				io.WriteString(rwc, "after revocation\n")
			}
			got, err := readLine(t, br)
			if err == nil {
				t.Fatalf("the revoked task's upgraded connection is still served: %q", got)
			}
			if n := len(streamRefusals(t, rec, verifier.FrontendProxy, verifier.ReasonRevoked)); n != 2 {
				t.Errorf("%d revoked refusals recorded, want 2 (the new request, the connection)", n)
			}
		})
	}
}

// readLine reads a line, failing the test if nothing (neither a line nor
// an error) comes within 20 s.
func readLine(t *testing.T, br *bufio.Reader) (string, error) {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() { s, err := br.ReadString('\n'); c <- res{s, err} }()
	select {
	case r := <-c:
		return r.s, r.err
	case <-time.After(20 * time.Second):
		t.Fatal("the stream neither answered nor closed in 20 s")
	}
	return "", errors.New("unreachable")
}

// An upgraded connection is closed when the client's certificate expires.
func TestProxyUpgradeEndsAtExpiry(t *testing.T) {
	e, _, _, rec := liveEnv(t)
	s := shortSVID(t, e)
	client, base, _ := upgradeProxy(t, e, true, s)
	resp, rwc := upgrade(t, client, base, "Connection", "Upgrade", "Upgrade", "echo")
	if rwc == nil {
		t.Fatalf("no upgrade: %d %s", resp.StatusCode, resp.Header.Get(verifier.HeaderDenyReason))
	}
	br := bufio.NewReader(rwc)
	io.WriteString(rwc, "first\n")
	if got, err := readLine(t, br); err != nil {
		t.Fatalf("before expiry: %q %v", got, err)
	}
	if got, err := readLine(t, br); err == nil {
		t.Fatalf("served past expiry: %q", got)
	}
	if now := time.Now(); now.Before(s.Certificates[0].NotAfter) {
		t.Errorf("closed at %s, before the certificate's NotAfter %s", now, s.Certificates[0].NotAfter)
	}
	if n := len(streamRefusals(t, rec, verifier.FrontendProxy, verifier.ReasonExpired)); n != 1 {
		t.Errorf("%d expired refusals recorded, want 1", n)
	}
}

// A streamed response (Server-Sent Events, or any body of unknown length
// that the reverse proxy flushes as it comes — an MCP server's GET
// stream) is held to its peer like an upgraded connection: after the
// revocation of a task in the chain, no further event reaches the client,
// and an idle stream is cut within the re-check interval.
func TestProxyStreamedResponseEndsOnRevocation(t *testing.T) {
	for _, kind := range []string{"sse", "unknown length"} {
		for _, idle := range []bool{false, true} {
			t.Run(kind+map[bool]string{false: "/busy", true: "/idle"}[idle], func(t *testing.T) {
				e, view, wall, rec := liveEnv(t)
				next := make(chan string)
				client, base, _ := proxyToHandler(t, e, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if kind == "sse" {
						w.Header().Set("Content-Type", "text/event-stream")
					}
					rc := http.NewResponseController(w)
					rc.Flush() // the headers now: the stream has begun
					for {
						select {
						case ev := <-next:
							io.WriteString(w, "data: "+ev+" for task "+r.Header.Get(verifier.HeaderTask)+"\n")
							rc.Flush()
						case <-r.Context().Done():
							return
						}
					}
				}))
				resp, err := client.Get(base + "/kb/events")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				next <- "first"
				if got, err := readLine(t, br); err != nil || got != "data: first for task T-42\n" {
					t.Fatalf("before revocation: %q %v", got, err)
				}
				if err := view.Apply(wall, nil, []string{plannerID}); err != nil {
					t.Fatal(err)
				}
				if !idle {
					select {
					case next <- "after revocation":
					case <-time.After(20 * time.Second):
						t.Fatal("the upstream's stream did not take the next event in 20 s")
					}
				}
				if got, err := readLine(t, br); err == nil {
					t.Fatalf("the revoked task's stream still delivers: %q", got)
				}
				if rs := streamRefusals(t, rec, verifier.FrontendProxy, verifier.ReasonRevoked); len(rs) != 1 {
					t.Errorf("%d revoked refusals recorded, want 1", len(rs))
				} else if a := rs[0].Action; a == nil || a.Method != "GET" || a.Path != "/kb/events" {
					t.Errorf("the refusal records the action %+v, want GET /kb/events", a)
				}
			})
		}
	}
}

// proxyToHandler is a real mTLS proxy in front of upstream; its client
// presents the task's SVID.
func proxyToHandler(t *testing.T, e *attackEnv, upstream http.Handler) (*http.Client, string, *httptest.Server) {
	t.Helper()
	up := httptest.NewServer(upstream)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	proxyID := spiffeid.RequireFromString("spiffe://example.org/kb")
	l, err := tls.Listen("tcp", "127.0.0.1:0", verifier.ServerTLSConfig(e.ca.CreateX509SVID(proxyID), e.ca.X509Bundle()))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: verifier.NewProxy(e.v, u, nil), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := claims()
	c.Deadline = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	tr := &http.Transport{TLSClientConfig: verifier.ClientTLSConfig(e.ca.CreateX509SVID(taskID, ext(t, c)), e.ca.X509Bundle(), tlsconfig.AuthorizeID(proxyID))}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, "https://" + l.Addr().String(), up
}
